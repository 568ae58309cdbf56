// REST calls to the bridge that served this page, from the SDK
// (/sdk/bridge.js). Every failure becomes an ApiError whose message is fit
// to show to a person.
export {
  ApiError, UnreachableError, devAuthAvailable, devToken, listRooms, createRoom, endRoom,
} from '/sdk/bridge.js';
