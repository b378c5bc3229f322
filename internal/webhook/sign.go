package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The headers of a delivery. The body is one CloudEvent in the CloudEvents
// HTTP binding's structured mode (Content-Type application/cloudevents+json).
const (
	// HeaderTimestamp is the Unix time (seconds) the request was signed.
	HeaderTimestamp = "Artifactstore-Timestamp"
	// HeaderSignature is "sha256=" and the lowercase hex HMAC-SHA256,
	// keyed with the subscription's secret, of the timestamp, a ".", and
	// the raw body.
	HeaderSignature = "Artifactstore-Signature"
	// HeaderSubscription names the subscription the delivery is for.
	HeaderSubscription = "Artifactstore-Subscription"
	// HeaderAttempt counts attempts at this event for this subscription,
	// from 1 (per process: it starts again at 1 after a restart).
	HeaderAttempt = "Artifactstore-Delivery-Attempt"
	// ContentType is the structured-mode media type of the body.
	ContentType = "application/cloudevents+json; charset=utf-8"
)

// Errors of Verify, matched with errors.Is.
var (
	ErrBadSignature = errors.New("webhook signature does not match")
	ErrStale        = errors.New("webhook timestamp outside the tolerance")
)

// Sign returns the HeaderSignature value for a body sent at ts.
func Sign(secret []byte, ts int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify is what a receiver does with a delivery: the signature must match
// the timestamp and body (forgery), and the timestamp must be within
// tolerance of now (replay of an old request). A receiver that also
// remembers event ids it handled turns at-least-once into exactly-once.
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(strings.TrimSpace(timestamp), 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s %q is not a Unix time", ErrBadSignature, HeaderTimestamp, timestamp)
	}
	want := Sign(secret, ts, body)
	if !hmac.Equal([]byte(want), []byte(strings.TrimSpace(signature))) {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: signed %s ago, tolerance %s", ErrStale, d.Round(time.Second), tolerance)
	}
	return nil
}
