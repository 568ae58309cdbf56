package mls

import (
	"testing"
)

// TestVectorsMessages decodes every structure of messages.json and checks
// that it re-encodes to the same bytes. The file has no cipher_suite field
// and its entries mix suites, so every entry runs; signatures are not
// checked here because most entries use suites whose signature schemes
// this package does not implement (signatures of suite 2 are checked by
// the welcome and passive-client tests).
func TestVectorsMessages(t *testing.T) {
	var vs []map[string]hexBytes
	loadVectors(t, "messages.json", &vs)
	type codec struct {
		field string
		parse func(r *Reader) func(w *Writer)
	}
	proposal := func(pt ProposalType) func(r *Reader) func(w *Writer) {
		return func(r *Reader) func(w *Writer) {
			p := &Proposal{Type: pt}
			p.unmarshalBody(r)
			return p.marshalBody
		}
	}
	mlsMessage := func(want WireFormat) func(r *Reader) func(w *Writer) {
		return func(r *Reader) func(w *Writer) {
			m := new(MLSMessage)
			m.unmarshal(r)
			if r.Err() == nil && m.WireFormat != want {
				r.failf("wire format %d, want %d", m.WireFormat, want)
			}
			return m.marshal
		}
	}
	codecs := []codec{
		{"mls_welcome", mlsMessage(WireFormatWelcome)},
		{"mls_group_info", mlsMessage(WireFormatGroupInfo)},
		{"mls_key_package", mlsMessage(WireFormatKeyPackage)},
		{"ratchet_tree", func(r *Reader) func(w *Writer) { t := new(ratchetTree); t.unmarshal(r); return t.marshal }},
		{"group_secrets", func(r *Reader) func(w *Writer) { g := new(GroupSecrets); g.unmarshal(r); return g.marshal }},
		{"add_proposal", proposal(ProposalAdd)},
		{"update_proposal", proposal(ProposalUpdate)},
		{"remove_proposal", proposal(ProposalRemove)},
		{"pre_shared_key_proposal", proposal(ProposalPSK)},
		{"re_init_proposal", proposal(ProposalReInit)},
		{"external_init_proposal", proposal(ProposalExternalInit)},
		{"group_context_extensions_proposal", proposal(ProposalGroupContextExtensions)},
		{"commit", func(r *Reader) func(w *Writer) { c := new(Commit); c.unmarshal(r); return c.marshal }},
		{"public_message_application", mlsMessage(WireFormatPublicMessage)},
		{"public_message_proposal", mlsMessage(WireFormatPublicMessage)},
		{"public_message_commit", mlsMessage(WireFormatPublicMessage)},
		{"private_message", mlsMessage(WireFormatPrivateMessage)},
	}
	var c tally
	checked := 0
	for i, v := range vs {
		for _, cd := range codecs {
			in, ok := v[cd.field]
			if !ok {
				t.Errorf("entry %d: no field %s", i, cd.field)
				continue
			}
			var out func(w *Writer)
			if err := decodeAll(in, cd.field, func(r *Reader) { out = cd.parse(r) }); err != nil {
				t.Errorf("entry %d %s: %v", i, cd.field, err)
				continue
			}
			if got := encode(out); !equal(got, in) {
				t.Errorf("entry %d %s: re-encoding differs\n got %x\nwant %x", i, cd.field, got, []byte(in))
			}
			checked++
		}
		c.ran++
	}
	t.Logf("messages.json: %d structures decoded and re-encoded", checked)
	c.log(t, "messages.json")
}
