// A tiny HTTPS server and client for the TLS capture tests (standard library only).
//
//	tlsgo server PORT CERT KEY     serve POST /echo (prints "ready" once listening)
//	tlsgo client URL CAFILE BODY   print "ready", wait for a line on stdin, POST BODY
//
// HTTP/1.1 only, unless TLSGO_H2=1 (then HTTP/2 through ALPN, as Go does by default).
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
)

var h2 = os.Getenv("TLSGO_H2") == "1"

func server(port, cert, key string) error {
	http.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Go-Server", "yes")
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"go_echo": %s}`, body)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	srv := &http.Server{}
	if !h2 {
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	return srv.ServeTLS(ln, cert, key)
}

func client(url, caFile, body string) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n')
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Go-Client", "abc")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tr.CloseIdleConnections()
	fmt.Println(resp.Proto, resp.StatusCode, string(out))
	return nil
}

func main() {
	var err error
	switch {
	case len(os.Args) == 5 && os.Args[1] == "server":
		err = server(os.Args[2], os.Args[3], os.Args[4])
	case len(os.Args) == 5 && os.Args[1] == "client":
		err = client(os.Args[2], os.Args[3], os.Args[4])
	default:
		err = fmt.Errorf("usage: tlsgo server PORT CERT KEY | tlsgo client URL CAFILE BODY")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tlsgo:", err)
		os.Exit(1)
	}
}
