// Type declarations of @voicebridge/sdk (bridge.js), protocol version 1.

/** The protocol version this SDK speaks; the package's major version. */
export const protocolVersion: 1;
/** The package version. */
export const version: string;

/** A token, or a function returning a fresh one (called per connection and REST call). */
export type TokenSource = string | (() => string | Promise<string>);

/** A REST failure: HTTP status, the bridge's error code and the field at fault. */
export class ApiError extends Error {
  readonly name: 'ApiError';
  readonly status: number;
  /** invalid_body, invalid_token, unauthorized, not_found, not_a_room, forbidden, bot_forbidden, rate_limited, ... */
  readonly code: string;
  readonly field: string;
  constructor(status: number, code: string, message: string, field?: string);
}

/** The request never got an HTTP answer (or a proxy answered 502-504). */
export class UnreachableError extends Error {
  readonly name: 'UnreachableError';
  readonly cause: unknown;
  constructor(cause: unknown);
}

export interface Member { userId: string; name: string; bot?: boolean }
export interface Room { channelId: string; name: string; guildId: string; userLimit: number; members?: Member[]; participants?: RoomParticipant[]; /** The caller may end this room (its creator, or an admin). */ canEnd?: boolean }
/** A browser in a room's call, as GET /api/rooms lists it. */
export interface RoomParticipant { id: string; userId: string; name: string }
export interface DevToken { token: string; userId: string; name: string; expiresAt: number }

/** base: the bridge's base URL ('' = this page's origin). */
export function devAuthAvailable(base?: string): Promise<boolean>;
export function devToken(name: string, base?: string, guilds?: string[]): Promise<DevToken>;
export function listRooms(token: string, base?: string, guildId?: string): Promise<Room[]>;
export function createRoom(token: string, name: string, userLimit: number, base?: string, guildId?: string): Promise<Room>;
export function endRoom(token: string, channelId: string, base?: string): Promise<void>;

/** The hub's answer to a good auth. */
export interface Ack {
  v: 1; type: 'ack'; event: 'auth.ok';
  /** The first of guilds. */
  guildId: string;
  /** The Discord servers the token allows, in the bridge's order: their events and rooms only. */
  guilds: string[];
  /** The guilds again, in the same order, with their Discord names (absent while unknown: show the id). */
  servers?: { id: string; name?: string }[];
  userId: string; name: string; clientId: string;
  /** Unix seconds. */
  expiresAt: number;
  /** The token carries the admin role: it may end any room. */
  admin: boolean;
}

export type SocketState = 'idle' | 'connecting' | 'open' | 'retrying' | 'closed';
export interface SocketStateDetail { state: SocketState; attempt: number; retryAt?: number; reason?: string }

export interface Track { trackId: string; streamId: string; kind: 'audio' | 'video' }
/** A member of a call: a browser, or a Discord member the bridge hears. */
export interface Participant {
  id: string; userId: string; name: string; kind: 'browser' | 'discord';
  muted: boolean; camera: boolean; speaking: boolean; tracks: Track[];
}
/** A participant as Call.list() gives it. */
export interface CallParticipant extends Participant {
  /** The remote stream, once its tracks arrived. */
  stream: MediaStream | null;
  /** The server's word, or the level heard now. */
  speaking: boolean;
  /** 0..1 */
  volume: number;
}

export interface RoomPayload { channelId: string; name: string; guildId: string; userLimit: number }
export interface VoicePayload { guildId: string; channelId: string; userId: string; username: string; bot?: boolean }
export interface ParticipantPayload { roomId: string; participant: Participant }
export interface EventMap {
  'room.created': RoomPayload; 'room.deleted': RoomPayload;
  'voice.joined': VoicePayload; 'voice.left': VoicePayload;
  'participant.joined': ParticipantPayload; 'participant.left': ParticipantPayload;
  speaking: ParticipantPayload; mute: ParticipantPayload; camera: ParticipantPayload;
}
export interface HubEvent { event: string; payload: Record<string, unknown>; ts: number }

export const CloseUnauthorized: 4401;
export const CloseSlowClient: 4408;
export const CloseBadMessages: 4400;
export const firstDelayMs: number;
export const maxDelayMs: number;
/** The wait before retry number attempt (0-based), with ±20 % jitter. */
export function backoffDelay(attempt: number): number;

/** The authenticated socket, reconnecting with capped exponential backoff. */
export class Hub extends EventTarget {
  constructor(getToken: () => string | Promise<string>, base?: string);
  readonly state: SocketState;
  readonly ack: Ack | null;
  start(): void;
  stop(): void;
  retryNow(): void;
  /** Sends one protocol message; false when the socket is not signed in. */
  send(msg: Record<string, unknown>): boolean;
  reauth(token: string): void;
}

export type CallState = 'idle' | 'joining' | 'connecting' | 'connected' | 'reconnecting' | 'ended';
export interface CallEnded { code: string; message: string; retry: boolean }
export interface CallStats {
  inbound: { kind: string; trackId: string; streamId: string; packetsReceived: number; packetsLost: number;
    bytesReceived: number; audioLevel: number; totalAudioEnergy: number; framesDecoded: number;
    frameWidth: number; frameHeight: number }[];
  outbound: { kind: string; packetsSent: number; bytesSent: number; framesEncoded: number }[];
  transport: { dtlsState: string; iceState: string; pair: string } | null;
  /** How the call's media travels: 'direct UDP', 'direct TCP', 'relayed through TURN (tcp)'...; '' before a pair is selected. */
  path: string;
  connectionState?: RTCPeerConnectionState;
  signalingState?: RTCSignalingState;
}

/**
 * One call. Events: state {state, message}, participants {}, discord {discord, message},
 * privacy {code}, path {path}, notice {message}, ended {code, message, retry}.
 */
export class Call extends EventTarget {
  constructor(o: { hub: Hub; roomId: string; local: MediaStream; camId: string; muted: boolean;
    me: { userId?: string; name: string }; audioCtx: AudioContext | null; playAudio?: boolean });
  readonly roomId: string;
  readonly state: CallState;
  readonly ended: boolean;
  readonly muted: boolean;
  readonly cameraOn: boolean;
  /** This session's participant id (after joined). */
  readonly selfId: string;
  /** The call's DAVE privacy code, '' when not end-to-end encrypted. */
  readonly privacyCode: string;
  /** How the call's media travels (see CallStats.path); '' before it is known. */
  readonly path: string;
  readonly discord: { discord: '' | 'connecting' | 'connected' | 'reconnecting' | 'unavailable'; message: string };
  readonly local: MediaStream;
  readonly pc: RTCPeerConnection | null;
  readonly participants: Map<string, Participant>;
  join(): void;
  rejoin(): void;
  leave(): void;
  end(code: string, message: string, retry?: boolean): void;
  setMuted(muted: boolean): void;
  setCamera(on: boolean): Promise<void>;
  /** Asks the bridge for new ICE credentials; also done on a network change. */
  restartIce(): boolean;
  setVolume(participantId: string, volume: number): void;
  volume(participantId: string): number;
  list(): CallParticipant[];
  streamFor(p: Participant): MediaStream | null;
  speaking(key: string): boolean;
  stats(): Promise<CallStats | null>;
  handleSignal(msg: Record<string, unknown>): void;
}

/** One bridge, one user, one socket, at most one call. */
export class Bridge extends EventTarget {
  constructor(o: { url?: string; token: TokenSource });
  readonly url: string;
  readonly state: SocketState;
  readonly me: { userId: string; name: string };
  readonly call: Call | null;
  token(): Promise<string>;
  setToken(token: TokenSource): Promise<void>;
  listRooms(o?: { guildId?: string }): Promise<Room[]>;
  createRoom(name: string, o?: { userLimit?: number; guildId?: string }): Promise<Room>;
  endRoom(channelId: string): Promise<void>;
  /** Resolves with the ack; rejects (code 'unauthorized') if the token is refused. */
  connect(): Promise<Ack>;
  disconnect(): void;
  join(roomId: string, o?: { microphone?: string; camera?: string; stream?: MediaStream; muted?: boolean; playAudio?: boolean }): Promise<Call>;
  addEventListener<K extends keyof EventMap>(type: K, listener: (e: CustomEvent<EventMap[K]>) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: 'event', listener: (e: CustomEvent<HubEvent>) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: 'state', listener: (e: CustomEvent<SocketStateDetail>) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: 'ready', listener: (e: CustomEvent<{ ack: Ack }>) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: 'unauthorized', listener: (e: CustomEvent<{ reason: string }>) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
}

export function getLocalMedia(micId: string, camId: string): Promise<MediaStream>;
export function getCamera(camId: string): Promise<MediaStreamTrack | null>;
export function listDevices(): Promise<{ mics: MediaDeviceInfo[]; cams: MediaDeviceInfo[] }>;
export function mediaErrorText(err: unknown): string;
export function errorText(code: string, detail?: string): string;
export class LevelMeter {
  constructor(ctx: AudioContext, track: MediaStreamTrack);
  level(): number;
  close(): void;
}
