package hub

import (
	"crypto/subtle"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
)

// readyResponse is the body of GET /readyz. Everyone sees whether the
// bridge is ready and, if not, why; Operator is there only for a request
// that carries Options.OperatorToken.
type readyResponse struct {
	Ready bool `json:"ready"`
	// Reasons say what keeps the bridge from being ready; empty when ready.
	Reasons  []string        `json:"reasons,omitempty"`
	Operator *operatorStatus `json:"operator,omitempty"`
}

// operatorStatus is what an operator sees on /readyz: the parts' own
// status reports (session ids and the like) and the process's counters.
// Each part's report is one field, so another part's status is one more.
type operatorStatus struct {
	Gateway    any           `json:"gateway"`
	HubClients int           `json:"hubClients"`
	HubConns   int           `json:"hubConnections"`
	Process    processStatus `json:"process"`
	// Cluster is Options.Cluster's report (Redis, instances); absent for
	// a lone instance.
	Cluster any `json:"cluster,omitempty"`
}

// processStatus is the Go runtime's view of the process, for watching
// memory and goroutines over days (the soak run samples it).
type processStatus struct {
	Goroutines     int    `json:"goroutines"`
	HeapAllocBytes uint64 `json:"heapAllocBytes"`
	// HeapLiveBytes is the heap the last GC found reachable: the figure
	// that grows with a leak, without the sawtooth of garbage between GCs.
	HeapLiveBytes  uint64 `json:"heapLiveBytes"`
	HeapInuseBytes uint64 `json:"heapInuseBytes"`
	SysBytes       uint64 `json:"sysBytes"`
	NumGC          uint32 `json:"numGC"`
}

// serveHealthz answers 200 "ok" while the process serves HTTP at all
// (liveness).
func (h *Hub) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}

// serveReadyz answers 200 when the hub is not shutting down and
// Options.Ready has nothing against it, else 503 with the reasons. With
// "Authorization: Bearer <OperatorToken>" it adds the operator's view.
func (h *Hub) serveReadyz(w http.ResponseWriter, r *http.Request) {
	var resp readyResponse
	h.mu.RLock()
	closing := h.closing
	h.mu.RUnlock()
	if closing {
		resp.Reasons = append(resp.Reasons, "the server is shutting down")
	}
	if h.opts.Ready != nil {
		if err := h.opts.Ready(); err != nil {
			resp.Reasons = append(resp.Reasons, err.Error())
		}
	}
	resp.Ready = len(resp.Reasons) == 0
	if h.isOperator(r) {
		resp.Operator = h.operatorStatus()
		if h.opts.Cluster != nil {
			resp.Operator.Cluster = h.opts.Cluster(r.Context())
		}
	}
	status := http.StatusOK
	if !resp.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, resp)
}

// isOperator reports whether r carries the operator token; compared in
// constant time so that timing does not give it away.
func (h *Hub) isOperator(r *http.Request) bool {
	if len(h.opts.OperatorToken) == 0 {
		return false
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), h.opts.OperatorToken) == 1
}

func (h *Hub) operatorStatus() *operatorStatus {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(live)
	var liveBytes uint64
	if live[0].Value.Kind() == metrics.KindUint64 {
		liveBytes = live[0].Value.Uint64()
	}
	h.mu.RLock()
	clients, conns := len(h.clients), len(h.conns)
	h.mu.RUnlock()
	st := &operatorStatus{
		HubClients: clients,
		HubConns:   conns,
		Process: processStatus{
			Goroutines:     runtime.NumGoroutine(),
			HeapAllocBytes: ms.HeapAlloc,
			HeapLiveBytes:  liveBytes,
			HeapInuseBytes: ms.HeapInuse,
			SysBytes:       ms.Sys,
			NumGC:          ms.NumGC,
		},
	}
	if h.opts.Status != nil {
		st.Gateway = h.opts.Status()
	}
	return st
}
