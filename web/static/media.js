// Local devices, from the SDK (/sdk/bridge.js): permission, pickers, the
// microphone level.
export { getLocalMedia, getCamera, listDevices, mediaErrorText, LevelMeter } from '/sdk/bridge.js';
