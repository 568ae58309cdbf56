package mls

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The davey interop test drives @snazzah/davey (Discord's DAVE protocol on
// OpenMLS) through voice/dave/interop/peer.js, a line-based JSON wrapper,
// and checks that both implementations agree on every epoch.

const daveyCallTimeout = 20 * time.Second

type daveyPeer struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan []byte
	wg    sync.WaitGroup
	next  int
}

func startDavey(t *testing.T) *daveyPeer {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "voice", "dave", "interop")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@snazzah", "davey", "package.json")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("davey is not installed in %s (run npm ci there): %v", dir, err)
		}
		t.Skipf("davey not installed in %s; run npm ci there to enable the MLS interop test", dir)
	}
	cmd := exec.Command("node", "peer.js")
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting node: %v", err)
	}
	p := &daveyPeer{t: t, cmd: cmd, stdin: stdin, lines: make(chan []byte, 1)}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<16), 1<<24)
		for sc.Scan() {
			p.lines <- append([]byte{}, sc.Bytes()...)
		}
	}()
	t.Cleanup(func() {
		_ = p.stdin.Close()
		done := make(chan struct{})
		go func() { p.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(daveyCallTimeout):
			_ = p.cmd.Process.Kill()
			for range p.lines {
			}
			<-done
		}
		_ = p.cmd.Wait()
	})
	return p
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("go.mod not found")
		}
		dir = up
	}
}

func (p *daveyPeer) call(cmd string, args map[string]any) map[string]any {
	p.t.Helper()
	p.next++
	req := map[string]any{"id": p.next, "cmd": cmd}
	for k, v := range args {
		req[k] = v
	}
	b, err := json.Marshal(req)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		p.t.Fatalf("davey %s: %v", cmd, err)
	}
	select {
	case line, ok := <-p.lines:
		if !ok {
			p.t.Fatalf("davey %s: peer exited", cmd)
		}
		var out map[string]any
		if err := json.Unmarshal(line, &out); err != nil {
			p.t.Fatalf("davey %s: %v", cmd, err)
		}
		if out["ok"] != true {
			p.t.Fatalf("davey %s: %v", cmd, out["error"])
		}
		return out
	case <-time.After(daveyCallTimeout):
		p.t.Fatalf("davey %s: no answer in %v", cmd, daveyCallTimeout)
		return nil
	}
}

func (p *daveyPeer) bytes(v any) []byte {
	p.t.Helper()
	s, _ := v.(string)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		p.t.Fatal(err)
	}
	return b
}

func (p *daveyPeer) epochAuthenticator() []byte {
	p.t.Helper()
	return p.bytes(p.call("state", nil)["epochAuthenticator"])
}

// proposals sends op 27 (append) to davey and returns its commit and
// Welcome, if any.
func (p *daveyPeer) proposals(msgs [][]byte, recognized ...uint64) ([]byte, []byte) {
	p.t.Helper()
	var body []byte
	for _, m := range msgs {
		body = append(body, m...)
	}
	data := append(AppendVarint(nil, len(body)), body...)
	ids := make([]string, len(recognized))
	for i, id := range recognized {
		ids[i] = fmt.Sprint(id)
	}
	res := p.call("processProposals", map[string]any{"opType": 0, "data": base64.StdEncoding.EncodeToString(data), "recognized": ids})
	var commit, welcome []byte
	if res["commit"] != nil {
		commit = p.bytes(res["commit"])
	}
	if res["welcome"] != nil {
		welcome = p.bytes(res["welcome"])
	}
	return commit, welcome
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func TestDaveyInterop(t *testing.T) {
	p := startDavey(t)
	const channel = 1234567890
	gid := binary.BigEndian.AppendUint64(nil, channel)
	const daveyID = 1002
	p.call("init", map[string]any{"protocolVersion": 1, "userId": fmt.Sprint(daveyID), "channelId": fmt.Sprint(channel)})
	srv := newTestServer(t)
	senders, err := ParseExternalSenders(srv.ext.Data)
	if err != nil {
		t.Fatal(err)
	}
	p.call("setExternalSender", map[string]any{"data": b64(senders[0].Marshal())})

	// davey's bare key package validates here.
	kp, err := ParseKeyPackage(p.bytes(p.call("keyPackage", nil)["data"]))
	if err != nil {
		t.Fatal(err)
	}
	if err := kp.Validate(); err != nil {
		t.Fatalf("davey's key package: %v", err)
	}
	if binary.BigEndian.Uint64(kp.Identity()) != daveyID {
		t.Fatalf("davey identity %x", kp.Identity())
	}

	// 1. We create the group and welcome davey.
	alice := newTestClient(t, 1001)
	alice.g, err = NewGroup(gid, alice.kp, alice.priv, []Extension{srv.ext})
	if err != nil {
		t.Fatal(err)
	}
	deliverProposal(t, srv.propose(gid, 0, AddProposal(kp)), alice)
	_, welcome, pending, err := alice.g.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.g.ApplyPendingCommit(pending); err != nil {
		t.Fatal(err)
	}
	p.call("processWelcome", map[string]any{"data": b64(welcome.Marshal())})
	if !equal(p.epochAuthenticator(), alice.g.EpochAuthenticator()) {
		t.Fatal("epoch 1: davey disagrees after joining from our Welcome")
	}

	// 2. davey commits an Add (no path); we follow; Carol joins from
	// davey's Welcome.
	carol := newTestClient(t, 1003)
	add := srv.propose(gid, 1, AddProposal(carol.kp))
	deliverProposal(t, add, alice)
	dc, dw := p.proposals([][]byte{add}, 1001, daveyID, 1003)
	if err := alice.g.ProcessCommit(mustParse(t, dc)); err != nil {
		t.Fatalf("davey's Add commit: %v", err)
	}
	p.call("processCommit", map[string]any{"data": b64(dc)})
	w, _, err := ParseWelcome(dw)
	if err != nil {
		t.Fatal(err)
	}
	if carol.g, err = JoinFromWelcome(w, carol.kp, carol.priv); err != nil {
		t.Fatalf("joining from davey's Welcome: %v", err)
	}
	if !equal(carol.g.EpochAuthenticator(), alice.g.EpochAuthenticator()) {
		t.Fatal("epoch 2: Carol disagrees with us")
	}
	if !equal(p.epochAuthenticator(), alice.g.EpochAuthenticator()) {
		t.Fatal("epoch 2: davey disagrees")
	}

	// 3. davey commits a Remove (with a path we must decrypt).
	rm := srv.propose(gid, 2, RemoveProposal(carol.g.OwnLeafIndex()))
	deliverProposal(t, rm, alice)
	dc, _ = p.proposals([][]byte{rm}, 1001, daveyID)
	if m := mustParse(t, dc); m.Public.Content.Commit.Path == nil {
		t.Fatal("davey's Remove commit has no path")
	}
	if err := alice.g.ProcessCommit(mustParse(t, dc)); err != nil {
		t.Fatalf("davey's Remove commit: %v", err)
	}
	p.call("processCommit", map[string]any{"data": b64(dc)})
	if !equal(p.epochAuthenticator(), alice.g.EpochAuthenticator()) {
		t.Fatal("epoch 3: davey disagrees")
	}

	// 4. davey answers an Add with its own commit but loses the race: it
	// applies ours (with a path it must decrypt) and Dan joins from our
	// Welcome.
	dan := newTestClient(t, 1004)
	add = srv.propose(gid, 3, AddProposal(dan.kp))
	deliverProposal(t, add, alice)
	if dc, _ := p.proposals([][]byte{add}, 1001, daveyID, 1004); dc == nil {
		t.Fatal("davey made no commit")
	}
	commit, welcome, pending, err := alice.g.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.g.ApplyPendingCommit(pending); err != nil {
		t.Fatal(err)
	}
	p.call("processCommit", map[string]any{"data": b64(commit.Marshal())})
	if dan.g, err = JoinFromWelcome(welcome, dan.kp, dan.priv); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*testClient{dan} {
		x1, err1 := c.g.Export("Discord Secure Frames v0", []byte{1}, 16)
		x2, err2 := alice.g.Export("Discord Secure Frames v0", []byte{1}, 16)
		if err1 != nil || err2 != nil || !equal(x1, x2) || !equal(c.g.EpochAuthenticator(), alice.g.EpochAuthenticator()) {
			t.Fatal("Dan disagrees with us")
		}
	}
	if !equal(p.epochAuthenticator(), alice.g.EpochAuthenticator()) {
		t.Fatal("epoch 4: davey disagrees after our commit")
	}
	if got := fmt.Sprint(p.call("state", nil)["userIds"]); got != "[1001 1002 1004]" {
		t.Fatalf("davey roster %s", got)
	}
}
