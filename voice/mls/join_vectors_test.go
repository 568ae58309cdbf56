package mls

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func parseMessage(t *testing.T, b []byte) *MLSMessage {
	t.Helper()
	m, n, err := ParseMLSMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(b) {
		t.Fatalf("MLSMessage used %d of %d bytes", n, len(b))
	}
	return m
}

// TestVectorsWelcome opens each suite-2 Welcome with the init key, checks
// the GroupInfo signature against signer_pub and the confirmation tag
// against the key schedule run from the joiner secret. The vectors carry
// no ratchet tree, so the tree checks of joining run in the
// passive-client tests.
func TestVectorsWelcome(t *testing.T) {
	var vs []struct {
		CipherSuite CipherSuite `json:"cipher_suite"`
		InitPriv    hexBytes    `json:"init_priv"`
		SignerPub   hexBytes    `json:"signer_pub"`
		KeyPackage  hexBytes    `json:"key_package"`
		Welcome     hexBytes    `json:"welcome"`
	}
	loadVectors(t, "welcome.json", &vs)
	var c tally
	for _, v := range vs {
		if v.CipherSuite != CipherSuiteP256 {
			c.skip(otherSuite)
			continue
		}
		c.ran++
		kpMsg := parseMessage(t, v.KeyPackage)
		wMsg := parseMessage(t, v.Welcome)
		if kpMsg.KeyPackage == nil || wMsg.Welcome == nil {
			t.Fatal("wrong wire formats")
		}
		if err := kpMsg.KeyPackage.validate(false); err != nil {
			t.Errorf("key package: %v", err)
		}
		gs, gi, psk, err := openWelcome(wMsg.Welcome, kpMsg.KeyPackage, v.InitPriv, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyWithLabel(v.SignerPub, "GroupInfoTBS", encode(gi.marshalTBS), gi.Signature); err != nil {
			t.Errorf("GroupInfo signature: %v", err)
		}
		s := keyScheduleFromJoiner(gs.JoinerSecret, psk, gi.GroupContext.Marshal())
		eqHex(t, "confirmation_tag", mac(s.confirmation, gi.GroupContext.ConfirmedTranscriptHash), gi.ConfirmationTag)
	}
	c.log(t, "welcome.json")
}

type passiveVector struct {
	CipherSuite    CipherSuite `json:"cipher_suite"`
	KeyPackage     hexBytes    `json:"key_package"`
	SignaturePriv  hexBytes    `json:"signature_priv"`
	EncryptionPriv hexBytes    `json:"encryption_priv"`
	InitPriv       hexBytes    `json:"init_priv"`
	Welcome        hexBytes    `json:"welcome"`
	RatchetTree    hexBytes    `json:"ratchet_tree"`
	ExternalPSKs   []struct {
		PSKID hexBytes `json:"psk_id"`
		PSK   hexBytes `json:"psk"`
	} `json:"external_psks"`
	InitialEpochAuthenticator hexBytes `json:"initial_epoch_authenticator"`
	Epochs                    []struct {
		Proposals          []hexBytes `json:"proposals"`
		Commit             hexBytes   `json:"commit"`
		EpochAuthenticator hexBytes   `json:"epoch_authenticator"`
	} `json:"epochs"`
}

// runPassive joins from the Welcome and follows every epoch. It returns a
// non-nil reason when the entry relies on a feature this package does not
// implement (the error wraps ErrUnsupported); any other failure fails t.
func runPassive(t *testing.T, i int, v *passiveVector) (skipReason string) {
	t.Helper()
	kpMsg := parseMessage(t, v.KeyPackage)
	wMsg := parseMessage(t, v.Welcome)
	if kpMsg.KeyPackage == nil || wMsg.Welcome == nil {
		t.Fatalf("entry %d: wrong wire formats", i)
	}
	sig, err := SignatureKeyFromBytes(v.SignaturePriv)
	if err != nil {
		t.Fatal(err)
	}
	priv := &KeyPackagePrivate{InitKey: v.InitPriv, EncryptionKey: v.EncryptionPriv, SignatureKey: sig}
	unsupported := func(stage string, err error) string {
		msg := err.Error()
		if j := strings.Index(msg, ":"); j >= 0 {
			msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
		}
		return fmt.Sprintf("%s: %s", stage, msg)
	}
	opts := JoinOptions{RatchetTree: v.RatchetTree}
	for _, p := range v.ExternalPSKs {
		opts.ExternalPSKs = append(opts.ExternalPSKs, ExternalPSK{ID: p.PSKID, Secret: p.PSK})
	}
	g, err := JoinFromWelcomeWithOptions(wMsg.Welcome, kpMsg.KeyPackage, priv, opts)
	if errors.Is(err, ErrUnsupported) {
		return unsupported("welcome", err)
	}
	if err != nil {
		t.Errorf("entry %d: join: %v", i, err)
		return ""
	}
	eqHex(t, fmt.Sprintf("entry %d initial epoch_authenticator", i), g.EpochAuthenticator(), v.InitialEpochAuthenticator)
	for e, ep := range v.Epochs {
		for _, pb := range ep.Proposals {
			_, err := g.ProcessProposal(parseMessage(t, pb))
			if errors.Is(err, ErrUnsupported) {
				return unsupported("proposal", err)
			}
			if err != nil {
				t.Errorf("entry %d epoch %d: proposal: %v", i, e, err)
				return ""
			}
		}
		err := g.ProcessCommit(parseMessage(t, ep.Commit))
		if errors.Is(err, ErrUnsupported) {
			return unsupported("commit", err)
		}
		if err != nil {
			t.Errorf("entry %d epoch %d: commit: %v", i, e, err)
			return ""
		}
		eqHex(t, fmt.Sprintf("entry %d epoch %d epoch_authenticator", i, e), g.EpochAuthenticator(), ep.EpochAuthenticator)
	}
	return ""
}

func runPassiveFile(t *testing.T, file string) {
	var vs []passiveVector
	loadVectors(t, file, &vs)
	var c tally
	for i := range vs {
		if vs[i].CipherSuite != CipherSuiteP256 {
			c.skip(otherSuite)
			continue
		}
		if r := runPassive(t, i, &vs[i]); r != "" {
			c.skip("needs an unimplemented feature (" + r + ")")
			continue
		}
		c.ran++
	}
	c.log(t, file)
}

// TestVectorsPassiveClientWelcome joins groups of every shape from a
// Welcome (tree inlined or given out of band).
func TestVectorsPassiveClientWelcome(t *testing.T) {
	runPassiveFile(t, "passive-client-welcome.json")
}

// TestVectorsPassiveClientHandlingCommit follows commits of each kind.
// Entries whose messages are PrivateMessages (DAVE sends handshake
// messages only as PublicMessage, and this package does not implement the
// secret tree) or that inject PSKs are left out and counted.
func TestVectorsPassiveClientHandlingCommit(t *testing.T) {
	runPassiveFile(t, "passive-client-handling-commit.json")
}
