package results

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"
)

// Permanent reports whether err is a failure to reach the result store that retrying
// cannot fix: a certificate the client or the server refuses, or refused credentials.
// It names the cause. The driver reports these as a server selection timeout whose
// servers carry the real error, so each server's last error is examined.
func Permanent(err error) (cause string, ok bool) {
	var sse topology.ServerSelectionError
	if !errors.As(err, &sse) {
		return classify(err)
	}
	for _, s := range sse.Desc.Servers {
		if s.LastError != nil {
			if cause, ok := classify(s.LastError); ok {
				return cause, true
			}
		}
	}
	return "", false
}

func classify(err error) (string, bool) {
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verify           *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &unknownAuthority), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verify):
		return "the result store's TLS certificate is not trusted (check tlsCAFile / ssl_ca_certs and the host name): " + err.Error(), true
	case strings.Contains(err.Error(), "remote error: tls: "):
		return "the result store refused this client's TLS certificate (check tlsCertificateKeyFile: missing, expired, or not signed by its CA): " + err.Error(), true
	}
	var ce mongo.CommandError
	if errors.As(err, &ce) && ce.Code == 18 { // AuthenticationFailed
		return "the result store refused the credentials: " + err.Error(), true
	}
	if strings.Contains(err.Error(), "auth error") || strings.Contains(err.Error(), "AuthenticationFailed") {
		return "the result store refused the credentials: " + err.Error(), true
	}
	return "", false
}

// StoreWide reports whether err, from a write, is a failure of the result store as a
// whole (unreachable, no primary, refused credentials, timed out, out of resources),
// which holds writes until it passes, rather than a refusal of the documents written.
// Anything else the store answers to a write is taken to be about a document: the
// writer then finds the document at fault and stores it in another form.
func StoreWide(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, mongo.ErrClientDisconnected) || mongo.IsNetworkError(err) || mongo.IsTimeout(err) {
		return true
	}
	var sse topology.ServerSelectionError
	if errors.As(err, &sse) {
		return true
	}
	if _, ok := Permanent(err); ok {
		return true
	}
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) && bwe.WriteConcernError != nil {
		return true
	}
	var we mongo.WriteException
	if errors.As(err, &we) && we.WriteConcernError != nil {
		return true
	}
	var le mongo.LabeledError
	if errors.As(err, &le) && (le.HasErrorLabel("RetryableWriteError") || le.HasErrorLabel("NetworkError") ||
		le.HasErrorLabel("TransientTransactionError")) {
		return true
	}
	var se mongo.ServerError
	if errors.As(err, &se) {
		for _, code := range storeWideCodes {
			if se.HasErrorCode(code) {
				return true
			}
		}
	}
	msg := strings.ToLower(err.Error())
	for _, s := range storeWideText {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// storeWideCodes are MongoDB error codes about the server, not the document: host
// unreachable/not found, unauthorized, authentication failed, operation failed because
// of time, lock or write-concern trouble, shutdown, replica-set state changes.
var storeWideCodes = []int{6, 7, 13, 18, 24, 46, 50, 64, 89, 91, 112, 117, 133, 189, 262, 9001,
	10107, 11600, 11602, 13435, 13436}

// storeWideText are failures FerretDB reports as InternalError with its backend's text:
// PostgreSQL connection (SQLSTATE class 08), resource (53), operator (57) and
// transaction-rollback (40) errors, and SQLite's busy database.
var storeWideText = []string{"connection refused", "connection reset", "failed to connect", "dial tcp",
	"broken pipe", "i/o timeout", "sqlstate 08", "sqlstate 53", "sqlstate 57", "sqlstate 40",
	"too many clients", "database is locked", "server selection", "no primary", "incomplete read",
	"connection closed"}
