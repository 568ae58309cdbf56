package hub

import "net/http"

// readyResponse is the body of GET /readyz.
type readyResponse struct {
	Ready      bool `json:"ready"`
	Gateway    any  `json:"gateway"`
	HubClients int  `json:"hubClients"`
	// Cluster is Options.Cluster's report (Redis, instances); absent for
	// a lone instance.
	Cluster any `json:"cluster,omitempty"`
}

// serveHealthz answers 200 "ok" while the process serves HTTP at all
// (liveness).
func (h *Hub) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}

// serveReadyz answers 200 when Options.Ready says so and the hub is not
// shutting down, else 503, with the gateway's status either way.
func (h *Hub) serveReadyz(w http.ResponseWriter, r *http.Request) {
	h.mu.RLock()
	ready := !h.closing
	h.mu.RUnlock()
	if ready && h.opts.Ready != nil {
		ready = h.opts.Ready()
	}
	resp := readyResponse{Ready: ready, HubClients: h.Clients()}
	if h.opts.Status != nil {
		resp.Gateway = h.opts.Status()
	}
	if h.opts.Cluster != nil {
		resp.Cluster = h.opts.Cluster(r.Context())
	}
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, resp)
}
