package bg96

import (
	"fmt"

	"github.com/cellgate/cellgate/sdk"
)

// vendor is the NetError.Vendor of every Quectel result code.
const vendor = "quectel"

// resultText are the TCP/IP and SSL result codes (<err> of +QSSLOPEN,
// +QIOPEN and AT+QIGETERROR) with the meanings of the BG96 SSL AT Commands
// Manual ch. 5, identical to the TCP(IP) manual's ch. 4.
var resultText = map[int]string{
	0:   "operation successful",
	550: "unknown error",
	551: "operation blocked",
	552: "invalid parameters",
	553: "memory not enough",
	554: "create socket failed",
	555: "operation not supported",
	556: "socket bind failed",
	557: "socket listen failed",
	558: "socket write failed",
	559: "socket read failed",
	560: "socket accept failed",
	561: "open PDP context failed",
	562: "close PDP context failed",
	563: "socket identity has been used",
	564: "DNS busy",
	565: "DNS parse failed",
	566: "socket connect failed",
	567: "socket has been closed",
	568: "operation busy",
	569: "operation timeout",
	570: "PDP context broken down",
	571: "cancel send",
	572: "operation not allowed",
	573: "APN not configured",
	574: "port busy",
}

// netKind maps a result code to the contract's neutral kind. tlsOpen says
// the code answers AT+QSSLOPEN: a BG96 reports a refused TCP connection, a
// failed handshake and a rejected certificate all as 566 ("socket connect
// failed"), so on a TLS open 566 is a handshake failure; on a plain TCP
// open it is a connection failure.
func netKind(code int, tlsOpen bool) sdk.NetKind {
	switch code {
	case 565:
		return sdk.NetDNS
	case 566:
		if tlsOpen {
			return sdk.NetHandshake
		}
		return sdk.NetConnect
	case 554, 556, 574:
		return sdk.NetConnect
	case 569:
		return sdk.NetTimeout
	case 551, 553, 563, 564, 568:
		return sdk.NetBusy
	case 561, 562, 570, 573:
		return sdk.NetNoNetwork
	case 567:
		return sdk.NetPeerClosed
	case 558, 571:
		return sdk.NetSendFailed
	case 572:
		return sdk.NetState
	case 552, 555:
		return sdk.NetInvalid
	}
	return sdk.NetOther
}

// netError is a failed socket operation with the modem's code and words,
// e.g. "open session 0: +QSSLOPEN: 0,566 (socket connect failed)".
func netError(op string, id, code int, tlsOpen bool, words string) *sdk.NetError {
	text := words
	if meaning, ok := resultText[code]; ok {
		text = fmt.Sprintf("%s (%s)", words, meaning)
	}
	return &sdk.NetError{Op: op, Session: id, Kind: netKind(code, tlsOpen), Vendor: vendor, Code: code, Text: text}
}

// fileErrText are the FILE commands' +CME ERROR codes with the BG96 FILE AT
// Commands Manual's meanings (ch. 4); sdk/at knows only 3GPP's table, whose
// meanings for these numbers would be wrong.
var fileErrText = map[int]string{
	400: "invalid input value",
	401: "larger than the size of the file",
	402: "read zero byte",
	403: "drive full",
	405: "file not found",
	406: "invalid file name",
	407: "file already existed",
	409: "fail to write the file",
	410: "fail to open the file",
	411: "fail to read the file",
	413: "reach the max number of file allowed",
	414: "file read only",
	416: "invalid file descriptor",
	417: "fail to list the file",
	418: "fail to delete the file",
	419: "fail to get disk info",
	420: "no space",
	421: "time out",
	423: "file too large",
	425: "invalid parameter",
	426: "file already opened",
}
