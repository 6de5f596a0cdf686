package modemsim

import (
	"errors"
	"fmt"
)

// signalSetting is the +CSQ answer a test chose with SetSignal.
type signalSetting struct{ rssi, ber int }

// SetSignal makes AT+CSQ answer rssi,ber from now on while the module is
// registered (an unregistered module still answers 99,99), as a cell whose
// signal changed would: rssi is 0-31 or 99 (not detectable), ber 0-7 or 99.
// The setting survives reboots, like the radio environment it stands for.
// It fails for values outside those ranges or when the modem is closed.
func (m *Modem) SetSignal(rssi, ber int) error {
	if (rssi < 0 || rssi > 31) && rssi != 99 {
		return fmt.Errorf("modemsim: signal rssi %d: want 0-31 or 99", rssi)
	}
	if (ber < 0 || ber > 7) && ber != 99 {
		return fmt.Errorf("modemsim: signal ber %d: want 0-7 or 99", ber)
	}
	if !m.call(func() { m.signal = &signalSetting{rssi, ber} }) {
		return errors.New("modemsim: modem is closed")
	}
	m.log.Info("signal set", "modem", m.path, "rssi", rssi, "ber", ber)
	return nil
}

// csq is the rssi and ber AT+CSQ reports now; the core calls it.
func (m *Modem) csq() (rssi, ber int) {
	switch {
	case !m.registered():
		return 99, 99
	case m.signal != nil:
		return m.signal.rssi, m.signal.ber
	}
	return emuRSSI, 99
}
