// Local devices: permission, pickers, the microphone level.

/** getLocalMedia asks for the chosen microphone and camera ('' = default, 'none' = without). */
export async function getLocalMedia(micId, camId) {
  const audio = micId === 'none' ? false : (micId ? { deviceId: { exact: micId } } : true);
  const video = camId === 'none' ? false
    : { ...(camId ? { deviceId: { exact: camId } } : {}), width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24 } };
  if (!audio && !video) return new MediaStream();
  return navigator.mediaDevices.getUserMedia({ audio, video });
}

/** getCamera opens just the camera again (after it was turned off). */
export async function getCamera(camId) {
  const s = await getLocalMedia('none', camId || '');
  return s.getVideoTracks()[0] || null;
}

/** listDevices returns the microphones and cameras; labels need permission first. */
export async function listDevices() {
  const all = await navigator.mediaDevices.enumerateDevices();
  const mics = all.filter((d) => d.kind === 'audioinput');
  const cams = all.filter((d) => d.kind === 'videoinput');
  return { mics, cams };
}

/** mediaErrorText says in words why the browser refused the devices. */
export function mediaErrorText(err) {
  switch (err && err.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'The browser did not allow the microphone or camera. Allow them for this site and try again.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'That microphone or camera is not connected any more. Pick another one.';
    case 'NotReadableError':
    case 'AbortError':
      return 'The microphone or camera is in use by another program, or failed to start.';
    case 'TypeError':
      return 'This page needs a secure address (https:// or localhost) to use a microphone or camera.';
    default:
      return `The microphone or camera could not be opened (${(err && err.message) || err}).`;
  }
}

/**
 * LevelMeter reads the level of an audio track through an AnalyserNode, as
 * a 0..1 RMS value of the latest 2048 samples.
 */
export class LevelMeter {
  /** @param {AudioContext} ctx @param {MediaStreamTrack} track */
  constructor(ctx, track) {
    this.source = ctx.createMediaStreamSource(new MediaStream([track]));
    this.analyser = ctx.createAnalyser();
    this.analyser.fftSize = 2048;
    this.buf = new Float32Array(this.analyser.fftSize);
    this.source.connect(this.analyser);
  }

  level() {
    this.analyser.getFloatTimeDomainData(this.buf);
    let sum = 0;
    for (const v of this.buf) sum += v * v;
    return Math.sqrt(sum / this.buf.length);
  }

  close() {
    try { this.source.disconnect(); } catch { /* already */ }
  }
}
