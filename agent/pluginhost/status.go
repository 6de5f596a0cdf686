package pluginhost

import (
	"context"
	"errors"
	"fmt"

	"github.com/cellgate/cellgate/sdk"
)

// ErrNotReady is returned (wrapped) by Status while no plugin is ready.
var ErrNotReady = errors.New("plugin not ready")

// Status asks the ready plugin for its modem's state now (sdk.StatusReporter)
// without waiting for readiness: while the plugin is (re)starting it returns
// ErrNotReady, and a plugin that does not report status yields an error
// matching sdk.ErrStatusUnsupported. ctx bounds the call; the host's health
// checks are not affected by its outcome.
func (h *Host) Status(ctx context.Context) (sdk.ModemStatus, error) {
	s := h.state.Load()
	if s.final != nil {
		return sdk.ModemStatus{}, s.final
	}
	p := s.ready
	if p == nil {
		return sdk.ModemStatus{}, fmt.Errorf("%s modem status: %w", h.cfg.Model, ErrNotReady)
	}
	r, ok := p.Transport().(sdk.StatusReporter)
	if !ok {
		return sdk.ModemStatus{}, fmt.Errorf("%s modem status: %w", h.cfg.Model, sdk.ErrStatusUnsupported)
	}
	st, err := r.Status(ctx)
	if err != nil {
		return sdk.ModemStatus{}, fmt.Errorf("%s modem status (plugin pid %d): %w", h.cfg.Model, p.PID(), err)
	}
	return st, nil
}
