// The bridge's WebSocket (/api/ws), from the SDK (/sdk/bridge.js): room
// events and call signaling share it (docs/protocol.md).
export {
  Hub, backoffDelay, firstDelayMs, maxDelayMs, CloseUnauthorized, CloseSlowClient, CloseBadMessages,
} from '/sdk/bridge.js';
