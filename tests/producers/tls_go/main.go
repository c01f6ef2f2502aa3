// A tiny HTTPS server and client for the TLS capture tests (standard library only).
//
//	tlsgo server PORT CERT KEY     serve POST /echo (prints "ready" once listening)
//	tlsgo client URL CAFILE BODY   print "ready", wait for a line on stdin, POST BODY
//	tlsgo storm URL CAFILE N PAR   like client, but N GETs, PAR at a time, each on its own
//	                               connection; prints "ID PORT" per call (its local port)
//
// The server's /conn answers "peer=IP:PORT id=ID": the connection it saw the request on.
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
	"net/http/httptrace"
	"os"
	"strconv"
	"strings"
	"sync"
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
	http.HandleFunc("/conn", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "peer=%s id=%s", r.RemoteAddr, r.Header.Get("X-Id"))
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

func storm(url, caFile string, n, par int) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		DisableKeepAlives: true,
		TLSNextProto:      map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	client := &http.Client{Transport: tr}
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n')
	var mu sync.Mutex
	var firstErr error
	lines := make([]string, 0, n)
	ids := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				line, err := stormCall(client, url, id)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				lines = append(lines, line)
				mu.Unlock()
			}
		}()
	}
	for id := 0; id < n; id++ {
		ids <- id
	}
	close(ids)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	fmt.Println(strings.Join(lines, "\n"))
	return nil
}

func stormCall(client *http.Client, url string, id int) (string, error) {
	var port string
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		_, port, _ = net.SplitHostPort(info.Conn.LocalAddr().String())
	}}
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return "", err
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	req.Header.Set("X-Id", strconv.Itoa(id))
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", err
	}
	if want := fmt.Sprintf(":%s id=%d", port, id); !strings.HasSuffix(string(body), want) {
		return "", fmt.Errorf("call %d on port %s answered %q", id, port, body)
	}
	return fmt.Sprintf("%d %s", id, port), nil
}

func main() {
	var err error
	switch {
	case len(os.Args) == 5 && os.Args[1] == "server":
		err = server(os.Args[2], os.Args[3], os.Args[4])
	case len(os.Args) == 5 && os.Args[1] == "client":
		err = client(os.Args[2], os.Args[3], os.Args[4])
	case len(os.Args) == 6 && os.Args[1] == "storm":
		n, errN := strconv.Atoi(os.Args[4])
		par, errP := strconv.Atoi(os.Args[5])
		if errN != nil || errP != nil || n < 1 || par < 1 {
			err = fmt.Errorf("storm: N and PAR must be positive integers")
			break
		}
		err = storm(os.Args[2], os.Args[3], n, par)
	default:
		err = fmt.Errorf("usage: tlsgo server PORT CERT KEY | tlsgo client URL CAFILE BODY" +
			" | tlsgo storm URL CAFILE N PAR")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tlsgo:", err)
		os.Exit(1)
	}
}
