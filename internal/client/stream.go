package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// StreamOptions tunes StreamEvents.
type StreamOptions struct {
	// Reconnect is the wait before reconnecting after the stream broke
	// off; 0 means 1s.
	Reconnect time.Duration
	// OnReconnect, if set, is told why the stream broke before each wait.
	OnReconnect func(err error)
}

// StreamEvents follows GET /v1/events/stream from after, calling fn with
// every event in sequence order. When an established stream breaks off
// (a server restart, a network cut) it reconnects with Last-Event-ID set
// to the last event it handed to fn, so fn sees no gap and no duplicate.
// The first connection failing, or any answer other than 200, is
// returned. It returns nil when ctx is done and fn's error if fn fails.
func (c *Client) StreamEvents(ctx context.Context, after uint64, opts StreamOptions, fn func(Event) error) error {
	if opts.Reconnect <= 0 {
		opts.Reconnect = time.Second
	}
	connected := false
	for {
		err := c.streamOnce(ctx, after, func(e Event) error {
			if err := fn(e); err != nil {
				return &callbackError{err}
			}
			after = e.Seq
			return nil
		}, func() { connected = true })
		if ctx.Err() != nil {
			return nil
		}
		var cb *callbackError
		if errors.As(err, &cb) {
			return cb.err
		}
		var apiErr *Error
		if !connected || errors.As(err, &apiErr) {
			return err
		}
		if opts.OnReconnect != nil {
			opts.OnReconnect(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(opts.Reconnect):
		}
	}
}

type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

// streamOnce reads one connection until it ends.
func (c *Client) streamOnce(ctx context.Context, after uint64, fn func(Event) error, opened func()) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+"/v1/events/stream", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Last-Event-ID", strconv.FormatUint(after, 10))
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp)
	}
	opened()
	err = ReadSSE(resp.Body, func(id, data string) error {
		var e Event
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			return fmt.Errorf("event stream: event %s: %w", id, err)
		}
		return fn(e)
	})
	if err == nil {
		err = io.ErrUnexpectedEOF // the server ended the stream (shutdown)
	}
	return err
}

// ReadSSE parses a text/event-stream body and calls fn with the id and
// data of every message (data lines joined by "\n"). Comments and retry
// fields are skipped. It returns nil at the end of the body.
func ReadSSE(body io.Reader, fn func(id, data string) error) error {
	br := bufio.NewReaderSize(body, 64<<10)
	var id string
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if data != nil {
				if err := fn(id, strings.Join(data, "\n")); err != nil {
					return err
				}
			}
			data = nil
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			id = value
		case "data":
			data = append(data, value)
		}
	}
}
