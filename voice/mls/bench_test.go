package mls

import (
	"fmt"
	"testing"
)

// BenchmarkCommitProcess measures a member processing another member's
// commit (with a path) in groups of 2, 25 and 99 members: signature and
// membership tag checks, path merge, parent hash check, HPKE decryption,
// tree hash and key schedule.
func BenchmarkCommitProcess(b *testing.B) {
	for _, size := range []int{2, 25, 99} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			srv := newTestServer(b)
			committer := newTestClient(b, 1)
			var err error
			committer.g, err = NewGroup(testGroupID, committer.kp, committer.priv, []Extension{srv.ext})
			if err != nil {
				b.Fatal(err)
			}
			others := make([]*testClient, size-1)
			for i := range others {
				others[i] = newTestClient(b, uint64(i+2))
				deliverProposal(b, srv.propose(testGroupID, 0, AddProposal(others[i].kp)), committer)
			}
			// Everyone joins; only the last joiner follows along.
			receiver := others[len(others)-1]
			commitAndShare(b, committer, nil, []*testClient{receiver})
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				commit, _, pending, err := committer.g.Commit(CommitOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if err := committer.g.ApplyPendingCommit(pending); err != nil {
					b.Fatal(err)
				}
				wire := commit.Marshal()
				b.StartTimer()
				m, _, err := ParseMLSMessage(wire)
				if err != nil {
					b.Fatal(err)
				}
				if err := receiver.g.ProcessCommit(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCommitCreate measures making a commit with a path in a group
// of 25 members.
func BenchmarkCommitCreate(b *testing.B) {
	srv := newTestServer(b)
	c := newTestClient(b, 1)
	var err error
	c.g, err = NewGroup(testGroupID, c.kp, c.priv, []Extension{srv.ext})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 24; i++ {
		deliverProposal(b, srv.propose(testGroupID, 0, AddProposal(newTestClient(b, uint64(i+2)).kp)), c)
	}
	commitAndShare(b, c, nil, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, _, err := c.g.Commit(CommitOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
