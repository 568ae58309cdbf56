package mls

// epochSecrets are the outputs of the key schedule for one epoch
// (RFC 9420 §8, table in §8.1 "Epoch-derived secrets").
type epochSecrets struct {
	joiner         []byte
	welcome        []byte
	epoch          []byte
	senderData     []byte
	encryption     []byte
	exporter       []byte
	external       []byte
	confirmation   []byte
	membership     []byte
	resumption     []byte
	authentication []byte
	init           []byte
}

// joinerSecret is RFC 9420 §8: ExpandWithLabel(Extract(init_secret,
// commit_secret), "joiner", GroupContext_[n], Nh).
func joinerSecret(initSecret, commitSecret, groupContext []byte) []byte {
	return expandWithLabel(extract(initSecret, commitSecret), "joiner", groupContext, hashSize)
}

// keyScheduleFromJoiner runs the rest of RFC 9420 §8 from the joiner
// secret: the member secret Extract(joiner_secret, psk_secret), the welcome
// secret, the epoch secret and everything derived from it.
func keyScheduleFromJoiner(joiner, pskSecret, groupContext []byte) epochSecrets {
	if pskSecret == nil {
		pskSecret = zeros(hashSize)
	}
	member := extract(joiner, pskSecret)
	epoch := expandWithLabel(member, "epoch", groupContext, hashSize)
	return epochSecrets{
		joiner:         joiner,
		welcome:        DeriveSecret(member, "welcome"),
		epoch:          epoch,
		senderData:     DeriveSecret(epoch, "sender data"),
		encryption:     DeriveSecret(epoch, "encryption"),
		exporter:       DeriveSecret(epoch, "exporter"),
		external:       DeriveSecret(epoch, "external"),
		confirmation:   DeriveSecret(epoch, "confirm"),
		membership:     DeriveSecret(epoch, "membership"),
		resumption:     DeriveSecret(epoch, "resumption"),
		authentication: DeriveSecret(epoch, "authentication"),
		init:           DeriveSecret(epoch, "init"),
	}
}

// keySchedule runs RFC 9420 §8 from the previous epoch's init secret.
func keySchedule(initSecret, commitSecret, pskSecret, groupContext []byte) epochSecrets {
	if commitSecret == nil {
		commitSecret = zeros(hashSize)
	}
	return keyScheduleFromJoiner(joinerSecret(initSecret, commitSecret, groupContext), pskSecret, groupContext)
}

// welcomeKeyNonce derives the key and nonce that encrypt the GroupInfo in
// a Welcome (RFC 9420 §12.4.3.1).
func welcomeKeyNonce(welcomeSecret []byte) (key, nonce []byte) {
	return expandWithLabel(welcomeSecret, "key", nil, aeadKeySize),
		expandWithLabel(welcomeSecret, "nonce", nil, aeadNonceSize)
}

// exportSecret is MLS-Exporter (RFC 9420 §8.5).
func exportSecret(exporterSecret []byte, label string, context []byte, length int) ([]byte, error) {
	return ExpandWithLabel(DeriveSecret(exporterSecret, label), "exported", hashBytes(context), length)
}

// confirmedTranscriptHash is RFC 9420 §8.2: Hash(interim_[n-1] ||
// ConfirmedTranscriptHashInput{wire_format, content, signature}).
func confirmedTranscriptHash(interim []byte, wf WireFormat, content *FramedContent, signature []byte) []byte {
	return hashBytes(encode(func(w *Writer) {
		w.Raw(interim)
		w.Uint16(uint16(wf))
		content.marshal(w)
		w.Opaque(signature)
	}))
}

// interimTranscriptHash is RFC 9420 §8.2: Hash(confirmed_[n] ||
// InterimTranscriptHashInput{confirmation_tag}).
func interimTranscriptHash(confirmed, confirmationTag []byte) []byte {
	return hashBytes(encode(func(w *Writer) {
		w.Raw(confirmed)
		w.Opaque(confirmationTag)
	}))
}

// resolvedPSK is a pre-shared key with the id it was named by.
type resolvedPSK struct {
	id  PreSharedKeyID
	psk []byte
}

// pskSecret combines PSKs as RFC 9420 §8.4 describes: each PSK is
// extracted, expanded with its PSKLabel{id, index, count}, and chained
// into the running secret with Extract. No PSKs give the all-zero secret.
func pskSecret(psks []resolvedPSK) []byte {
	secret := zeros(hashSize)
	for i, p := range psks {
		extracted := extract(zeros(hashSize), p.psk)
		label := encode(func(w *Writer) {
			p.id.marshal(w)
			w.Uint16(uint16(i))
			w.Uint16(uint16(len(psks)))
		})
		input := expandWithLabel(extracted, "derived psk", label, hashSize)
		secret = extract(input, secret)
	}
	return secret
}
