#!/usr/bin/env bash
# Makes the media samples: the short Opus speech clip and the VP8 test
# pattern that emulator/voiceemu embeds for the demo's members, and the two
# Opus test tones that internal/audiotest embeds for the tests. Needs
# Debian's sox, opus-tools (opusenc), espeak-ng and ffmpeg. The outputs are committed,
# so this only runs when a sample must change.
set -euo pipefail
cd "$(dirname "$0")/.."

out=emulator/voiceemu/samples
tones=internal/audiotest/tones
mkdir -p "$out" "$tones"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

for tool in sox opusenc espeak-ng ffmpeg; do
  command -v "$tool" >/dev/null || { echo "make-samples: $tool is missing (apt-get install sox opus-tools espeak-ng ffmpeg)" >&2; exit 1; }
done

# 3 s stereo sines at 48 kHz, encoded as 20 ms Opus frames (what Discord carries).
for freq in 1000 440; do
  sox -n -r 48000 -c 2 -b 16 "$tmp/tone-$freq.wav" synth 3 sine "$freq" vol 0.5
  opusenc --quiet --framesize 20 --bitrate 32 --comp 10 \
    --padding 0 --discard-comments "$tmp/tone-$freq.wav" "$tones/tone-$freq.opus"
done

# A short spoken sentence, resampled to 48 kHz stereo.
espeak-ng -w "$tmp/speech-raw.wav" "The bridge carries your voice into the channel and back again."
sox "$tmp/speech-raw.wav" -r 48000 -c 2 -b 16 "$tmp/speech.wav"
opusenc --quiet --framesize 20 --bitrate 32 --comp 10 \
  --padding 0 --discard-comments "$tmp/speech.wav" "$out/speech.opus"

# 3 s of ffmpeg's test pattern as VP8 in IVF, a keyframe every second.
ffmpeg -loglevel error -y -f lavfi -i testsrc=size=320x240:rate=15 -t 3 \
  -c:v libvpx -b:v 300k -g 15 -auto-alt-ref 0 -f ivf "$out/testpattern.ivf"

ls -l "$out" "$tones"
