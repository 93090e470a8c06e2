package results

import (
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
