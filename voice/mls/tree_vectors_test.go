package mls

import (
	"slices"
	"testing"
)

func parseTree(t *testing.T, b []byte) *ratchetTree {
	t.Helper()
	tr := new(ratchetTree)
	if err := decodeAll(b, "ratchet_tree", tr.unmarshal); err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestVectorsTreeValidation(t *testing.T) {
	var vs []struct {
		CipherSuite CipherSuite `json:"cipher_suite"`
		Tree        hexBytes    `json:"tree"`
		GroupID     hexBytes    `json:"group_id"`
		TreeHashes  []hexBytes  `json:"tree_hashes"`
		Resolutions [][]uint32  `json:"resolutions"`
	}
	loadVectors(t, "tree-validation.json", &vs)
	var c tally
	for i, v := range vs {
		if v.CipherSuite != CipherSuiteP256 {
			c.skip(otherSuite)
			continue
		}
		c.ran++
		tr := parseTree(t, v.Tree)
		if len(tr.nodes) != len(v.TreeHashes) {
			t.Fatalf("entry %d: %d nodes, vector has %d", i, len(tr.nodes), len(v.TreeHashes))
		}
		for n := range tr.nodes {
			eqHex(t, "tree hash", tr.treeHash(nodeIndex(n), nil), v.TreeHashes[n])
			var res []uint32
			for _, x := range tr.resolution(nodeIndex(n)) {
				res = append(res, uint32(x))
			}
			if !slices.Equal(res, v.Resolutions[n]) && !(len(res) == 0 && len(v.Resolutions[n]) == 0) {
				t.Errorf("entry %d node %d: resolution %v want %v", i, n, res, v.Resolutions[n])
			}
		}
		if err := tr.verifyParentHashes(); err != nil {
			t.Errorf("entry %d: %v", i, err)
		}
		if err := tr.verifyInvariants(); err != nil {
			t.Errorf("entry %d: %v", i, err)
		}
		for l := uint32(0); l < tr.leafCount(); l++ {
			if ln := tr.leafNode(LeafIndex(l)); ln != nil {
				if err := ln.validateAlone(v.GroupID, LeafIndex(l), false); err != nil {
					t.Errorf("entry %d leaf %d: %v", i, l, err)
				}
			}
		}
	}
	c.log(t, "tree-validation.json")
}

// TestVectorsTreeOperations applies Add, Update and Remove proposals to a
// tree. The file only has suite 1 entries; what it tests (tree shape,
// blanking, truncation, unmerged leaves, SHA-256 tree hashes) involves no
// signature or HPKE operation and is the same for suite 2, so every entry
// runs.
func TestVectorsTreeOperations(t *testing.T) {
	var vs []struct {
		CipherSuite    CipherSuite `json:"cipher_suite"`
		TreeBefore     hexBytes    `json:"tree_before"`
		TreeHashBefore hexBytes    `json:"tree_hash_before"`
		Proposal       hexBytes    `json:"proposal"`
		ProposalSender uint32      `json:"proposal_sender"`
		TreeAfter      hexBytes    `json:"tree_after"`
		TreeHashAfter  hexBytes    `json:"tree_hash_after"`
	}
	loadVectors(t, "tree-operations.json", &vs)
	var c tally
	for i, v := range vs {
		c.ran++
		tr := parseTree(t, v.TreeBefore)
		eqHex(t, "tree_hash_before", tr.rootHash(), v.TreeHashBefore)
		var p Proposal
		if err := decodeAll(v.Proposal, "Proposal", p.unmarshal); err != nil {
			t.Fatal(err)
		}
		switch p.Type {
		case ProposalAdd:
			tr.addLeaf(p.Add.LeafNode.clone())
		case ProposalUpdate:
			tr.updateLeaf(LeafIndex(v.ProposalSender), p.Update.clone())
		case ProposalRemove:
			tr.removeLeaf(p.Remove)
		default:
			t.Fatalf("entry %d: proposal type %d", i, p.Type)
		}
		eqHex(t, "tree_after", tr.Marshal(), v.TreeAfter)
		eqHex(t, "tree_hash_after", tr.rootHash(), v.TreeHashAfter)
	}
	c.log(t, "tree-operations.json")
}

func TestVectorsTreeKEM(t *testing.T) {
	type pathSecret struct {
		Node       uint32   `json:"node"`
		PathSecret hexBytes `json:"path_secret"`
	}
	var vs []struct {
		CipherSuite             CipherSuite `json:"cipher_suite"`
		GroupID                 hexBytes    `json:"group_id"`
		Epoch                   uint64      `json:"epoch"`
		ConfirmedTranscriptHash hexBytes    `json:"confirmed_transcript_hash"`
		RatchetTree             hexBytes    `json:"ratchet_tree"`
		LeavesPrivate           []struct {
			Index          uint32       `json:"index"`
			EncryptionPriv hexBytes     `json:"encryption_priv"`
			SignaturePriv  hexBytes     `json:"signature_priv"`
			PathSecrets    []pathSecret `json:"path_secrets"`
		} `json:"leaves_private"`
		UpdatePaths []struct {
			Sender        uint32     `json:"sender"`
			UpdatePath    hexBytes   `json:"update_path"`
			PathSecrets   []hexBytes `json:"path_secrets"`
			CommitSecret  hexBytes   `json:"commit_secret"`
			TreeHashAfter hexBytes   `json:"tree_hash_after"`
		} `json:"update_paths"`
	}
	loadVectors(t, "treekem.json", &vs)
	var c tally
	decrypted := 0
	for i, v := range vs {
		if v.CipherSuite != CipherSuiteP256 {
			c.skip(otherSuite)
			continue
		}
		c.ran++
		base := parseTree(t, v.RatchetTree)
		if err := base.verifyParentHashes(); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		// Private state of each listed leaf: its leaf key and path keys.
		keysOf := map[LeafIndex]privateKeys{}
		for _, lp := range v.LeavesPrivate {
			kp, err := keyPairFromPrivate(lp.EncryptionPriv)
			if err != nil {
				t.Fatal(err)
			}
			k := privateKeys{LeafIndex(lp.Index).node(): kp}
			for _, ps := range lp.PathSecrets {
				nk, err := deriveKeyPair(DeriveSecret(ps.PathSecret, "node"))
				if err != nil {
					t.Fatal(err)
				}
				if !equal(nk.pub, base.nodes[ps.Node].encryptionKey()) {
					t.Fatalf("entry %d: path secret for node %d does not match the tree", i, ps.Node)
				}
				k[nodeIndex(ps.Node)] = nk
			}
			keysOf[LeafIndex(lp.Index)] = k
		}
		ctxFor := func(tr *ratchetTree) []byte {
			gc := GroupContext{CipherSuite: v.CipherSuite, GroupID: v.GroupID, Epoch: v.Epoch, TreeHash: tr.rootHash(), ConfirmedTranscriptHash: v.ConfirmedTranscriptHash}
			return gc.Marshal()
		}
		for j, u := range v.UpdatePaths {
			var up UpdatePath
			if err := decodeAll(u.UpdatePath, "UpdatePath", up.unmarshal); err != nil {
				t.Fatal(err)
			}
			sender := LeafIndex(u.Sender)
			tr := base.clone()
			if err := up.LeafNode.verifySignature(v.GroupID, sender); err != nil {
				t.Errorf("entry %d path %d: leaf signature: %v", i, j, err)
			}
			pubs := make([][]byte, len(up.Nodes))
			for k := range up.Nodes {
				pubs[k] = up.Nodes[k].EncryptionKey
			}
			ph, err := tr.mergePathKeys(sender, pubs)
			if err != nil {
				t.Fatal(err)
			}
			eqHex(t, "leaf parent hash", ph, up.LeafNode.ParentHash)
			tr.nodes[sender.node()] = &node{leaf: up.LeafNode.clone()}
			eqHex(t, "tree_hash_after", tr.rootHash(), u.TreeHashAfter)
			if err := tr.verifyParentHashes(); err != nil {
				t.Errorf("entry %d path %d: %v", i, j, err)
			}
			ctx := ctxFor(tr)
			for _, lp := range v.LeavesPrivate {
				if lp.Index == u.Sender {
					continue
				}
				keys := keysOf[LeafIndex(lp.Index)].clone()
				keys.prune(tr)
				_, cs, ps, err := tr.decryptPath(LeafIndex(lp.Index), keys, sender, &up, ctx, nil)
				if err != nil {
					t.Errorf("entry %d path %d leaf %d: %v", i, j, lp.Index, err)
					continue
				}
				eqHex(t, "commit_secret", cs, u.CommitSecret)
				eqHex(t, "path_secret", ps, u.PathSecrets[lp.Index])
				decrypted++
			}
		}
		// Generate a path from each private leaf and check every other
		// private leaf decrypts it to the same commit secret.
		for _, lp := range v.LeavesPrivate {
			sender := LeafIndex(lp.Index)
			sig, err := SignatureKeyFromBytes(lp.SignaturePriv)
			if err != nil {
				t.Fatal(err)
			}
			tr := base.clone()
			gen, err := tr.generatePath(sender, tr.leafNode(sender), sig, v.GroupID)
			if err != nil {
				t.Fatal(err)
			}
			ctx := ctxFor(tr)
			up, err := gen.encrypt(tr, ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := tr.verifyParentHashes(); err != nil {
				t.Errorf("entry %d own path from %d: %v", i, sender, err)
			}
			for _, other := range v.LeavesPrivate {
				if other.Index == lp.Index {
					continue
				}
				keys := keysOf[LeafIndex(other.Index)].clone()
				keys.prune(tr)
				_, cs, _, err := tr.decryptPath(LeafIndex(other.Index), keys, sender, up, ctx, nil)
				if err != nil {
					t.Errorf("entry %d own path from %d to %d: %v", i, sender, other.Index, err)
					continue
				}
				eqHex(t, "own commit secret", cs, gen.commitSecret)
			}
		}
	}
	t.Logf("treekem.json: %d update paths decrypted by a receiver", decrypted)
	c.log(t, "treekem.json")
}
