package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// remoteKeys is a JWKS fetched from the identity provider. Lookups of
// known kids read the current set through an atomic pointer: no lock, no
// network. An unknown kid starts a fetch, or joins the one in flight, and
// waits for it no longer than its context allows; within
// MinRefetchInterval of the last fetch it is refused at once and one
// fetch is scheduled for the end of the interval, so a key the provider
// added is known by then however many forged kids came first.
type remoteKeys struct {
	opts VerifierOptions
	now  func() time.Time

	set    atomic.Pointer[jwk.Set]
	ctx    context.Context // ends on close: cancels a fetch in flight
	cancel context.CancelFunc
	wg     sync.WaitGroup // fetches and the refresher

	mu        sync.Mutex
	closed    bool
	inflight  chan struct{} // closed when the running fetch ends; nil when none runs
	scheduled chan struct{} // closed when the scheduled fetch ends; nil when none is scheduled
	timer     *time.Timer   // starts the scheduled fetch
	lastStart time.Time     // when the last fetch caused by an unknown kid started
}

func newRemoteKeys(ctx context.Context, opts VerifierOptions) *remoteKeys {
	r := &remoteKeys{opts: opts, now: time.Now}
	r.ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	// The parent's end ends the background work, as Close does.
	stop := context.AfterFunc(ctx, r.close)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		<-r.ctx.Done()
		stop()
	}()
	return r
}

func (r *remoteKeys) current() jwk.Set {
	if p := r.set.Load(); p != nil {
		return *p
	}
	return jwk.NewSet()
}

func (r *remoteKeys) lookup(ctx context.Context, kid string) (jwk.Key, error) {
	if k, ok := r.current().LookupKeyID(kid); ok {
		return k, nil
	}
	// The provider may have rotated keys since the last fetch.
	done, next := r.refetch()
	if done == nil {
		return nil, unknownKey(kid, fmt.Sprintf(" (the key set is fetched again in %s)", next.Round(time.Millisecond)))
	}
	select {
	case <-done:
	case <-ctx.Done():
		return nil, &tokenError{public: reasonTimeout, detail: fmt.Sprintf("waiting for the JWKS fetch for kid %q: %v", kid, ctx.Err()), cause: ctx.Err()}
	}
	if k, ok := r.current().LookupKeyID(kid); ok {
		return k, nil
	}
	return nil, unknownKey(kid, "")
}

// refetch returns a channel closed when a fetch ends that this lookup
// may wait for: the one in flight, or one started now. Within
// MinRefetchInterval of the last fetch it returns nil and how long until
// the fetch it scheduled (once) for the end of the interval.
func (r *remoteKeys) refetch() (done <-chan struct{}, next time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, 0
	}
	next = r.lastStart.Add(r.opts.MinRefetchInterval).Sub(r.now())
	switch {
	case r.inflight != nil:
		// It may have read the set before the provider added the key:
		// the fetch at the end of the interval will see it.
		if r.scheduled == nil {
			r.scheduleLocked()
		}
		return r.inflight, 0
	case r.scheduled != nil:
		return nil, next
	case next > 0:
		r.scheduleLocked()
		return nil, next
	}
	ch := make(chan struct{})
	r.startLocked(ch)
	return ch, 0
}

// scheduleLocked arranges one fetch at the end of the current interval.
func (r *remoteKeys) scheduleLocked() {
	done := make(chan struct{})
	r.scheduled = done
	wait := max(r.lastStart.Add(r.opts.MinRefetchInterval).Sub(r.now()), 0)
	r.timer = time.AfterFunc(wait, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.closed || r.scheduled != done {
			return
		}
		if r.inflight != nil {
			// Still running: try again once it ends.
			r.timer.Reset(max(r.opts.MinRefetchInterval/10, time.Millisecond))
			return
		}
		r.scheduled = nil
		r.startLocked(done)
	})
}

// startLocked runs one fetch in the background and closes done after it.
func (r *remoteKeys) startLocked(done chan struct{}) {
	r.lastStart = r.now()
	r.inflight = done
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := r.fetch(r.ctx); err != nil && r.ctx.Err() == nil {
			r.opts.Logger.Warn("JWKS fetch failed; keeping the keys already loaded", "url", r.opts.JWKSURL, "err", err)
		}
		r.mu.Lock()
		r.inflight = nil
		r.mu.Unlock()
		close(done)
	}()
}

// startRefresh fetches the set every RefreshInterval until close.
func (r *remoteKeys) startRefresh() {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTicker(r.opts.RefreshInterval)
		defer t.Stop()
		for {
			select {
			case <-r.ctx.Done():
				return
			case <-t.C:
			}
			r.mu.Lock()
			if !r.closed && r.inflight == nil {
				r.startLocked(make(chan struct{}))
			}
			r.mu.Unlock()
		}
	}()
}

// fetch loads the key set, within FetchTimeout, and makes it current.
func (r *remoteKeys) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.opts.JWKSURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	res, err := r.opts.HTTPClient.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no answer within %s", r.opts.FetchTimeout)
		}
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", res.Status)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxJWKSBytes+1))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("body not read within %s", r.opts.FetchTimeout)
		}
		return fmt.Errorf("read JWKS: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return errors.New("JWKS response larger than 1 MiB")
	}
	set, err := jwk.Parse(body)
	if err != nil {
		return fmt.Errorf("not a JWKS: %w", err)
	}
	if set.Len() == 0 {
		return errors.New("the key set has no keys")
	}
	r.set.Store(&set)
	return nil
}

// close stops the refresher and any fetch, releases every waiter and
// waits for the goroutines. It may be called more than once.
func (r *remoteKeys) close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.wg.Wait()
		return
	}
	r.closed = true
	if r.timer != nil {
		r.timer.Stop()
	}
	if r.scheduled != nil {
		close(r.scheduled)
		r.scheduled = nil
	}
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}
