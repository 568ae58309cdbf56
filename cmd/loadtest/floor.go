package main

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// floorPacket is the size of the datagram the floor sends: an Opus packet
// with its RTP header and SRTP tag, about what the bridge sends per audio
// packet.
const floorPacket = 150

// floor is this machine's cost of forwarding one packet at the least: one
// sendto of a floorPacket-byte datagram on loopback and one SRTP AES-GCM
// seal, in CPU time of the thread doing it.
type floor struct {
	sendto, seal time.Duration
}

func (f floor) total() time.Duration { return f.sendto + f.seal }

// threadCPU is the calling thread's CPU time (RUSAGE_THREAD).
func threadCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(1, &ru) // 1: RUSAGE_THREAD (Linux)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// perOp runs op n times on one locked thread and returns its CPU time per
// call.
func perOp(n int, op func() error) (time.Duration, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t0 := threadCPU()
	for range n {
		if err := op(); err != nil {
			return 0, err
		}
	}
	return (threadCPU() - t0) / time.Duration(n), nil
}

// measureFloor measures the floor with n operations of each kind.
func measureFloor(n int) (floor, error) {
	var f floor
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return f, err
	}
	defer rx.Close()
	tx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return f, err
	}
	defer tx.Close()
	done := make(chan struct{})
	go func() { // a receiver drains, as a browser would
		defer close(done)
		buf := make([]byte, 2048)
		for {
			if _, err := rx.Read(buf); err != nil {
				return
			}
		}
	}()
	to := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	dgram := make([]byte, floorPacket)
	f.sendto, err = perOp(n, func() error {
		_, err := tx.WriteToUDPAddrPort(dgram, netip.AddrPortFrom(to.Addr(), to.Port()))
		return err
	})
	rx.Close()
	<-done
	if err != nil {
		return f, fmt.Errorf("sendto: %w", err)
	}

	ctx, err := srtp.CreateContext(make([]byte, 16), make([]byte, 12), srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		return f, err
	}
	hdr := rtp.Header{Version: 2, PayloadType: 111, SSRC: 1}
	raw := make([]byte, 12+floorPacket-12-16) // header + payload; the tag makes floorPacket
	out := make([]byte, 0, 2*floorPacket)
	f.seal, err = perOp(n, func() error {
		hdr.SequenceNumber++
		hdr.Timestamp += 960
		if _, err := hdr.MarshalTo(raw); err != nil {
			return err
		}
		_, err := ctx.EncryptRTP(out[:0], raw, &hdr)
		return err
	})
	if err != nil {
		return f, fmt.Errorf("srtp seal: %w", err)
	}
	return f, nil
}
