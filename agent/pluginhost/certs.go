package pluginhost

import (
	"context"
	"fmt"

	"github.com/cellgate/cellgate/sdk"
)

// This file gives the agent the plugin's certificate store while the host
// supervises it: a certificate rotation provisions a second set beside the
// first, deletes the superseded one, and makes the new set the one every
// restart provisions.

// bundle is the bundle provisioned after every Open: the last SetBundle's,
// else Config.Bundle.
func (h *Host) bundle() *sdk.Bundle {
	if b := h.replay.Load(); b != nil {
		return b
	}
	return h.cfg.Bundle
}

// SetBundle makes b the bundle provisioned after every later Open (a
// plugin restart); it does not provision it now (see Provision).
func (h *Host) SetBundle(b sdk.Bundle) {
	h.replay.Store(&b)
}

// Provision waits for the ready plugin, as Dial does, and provisions b
// through it, bounded by ctx and OpenTimeout.
func (h *Host) Provision(ctx context.Context, b sdk.Bundle) (sdk.ProvisionReport, error) {
	p, err := h.await(ctx, nil)
	if err != nil {
		return sdk.ProvisionReport{}, err
	}
	pctx, cancel := context.WithTimeout(ctx, h.cfg.OpenTimeout)
	defer cancel()
	rep, err := p.Transport().Provision(pctx, b)
	if err != nil {
		return rep, fmt.Errorf("provision SSL context %d (plugin pid %d): %w", b.Profile, p.PID(), err)
	}
	return rep, nil
}

// ListCerts returns the files in the modem's certificate store.
func (h *Host) ListCerts(ctx context.Context) ([]string, error) {
	p, err := h.await(ctx, nil)
	if err != nil {
		return nil, err
	}
	names, err := p.Transport().ListCerts(ctx)
	if err != nil {
		return nil, fmt.Errorf("list certificates (plugin pid %d): %w", p.PID(), err)
	}
	return names, nil
}

// DeleteCert deletes one file from the modem's certificate store.
func (h *Host) DeleteCert(ctx context.Context, name string) error {
	p, err := h.await(ctx, nil)
	if err != nil {
		return err
	}
	if err := p.Transport().DeleteCert(ctx, name); err != nil {
		return fmt.Errorf("delete certificate %s (plugin pid %d): %w", name, p.PID(), err)
	}
	return nil
}
