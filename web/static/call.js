// One call in one room, from the SDK (/sdk/bridge.js): the signaling over
// the hub socket and the RTCPeerConnection behind it, as the polite peer of
// perfect negotiation, with ICE restart and rejoining.
export { Call, errorText } from '/sdk/bridge.js';
