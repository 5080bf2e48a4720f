// An HTTP server and client in one static binary (CGO_ENABLED=0: Go's own syscalls, no libc).
//
//	gohttp server ADDR      serves until killed; prints "remote <RemoteAddr>" for every request and answers it
//	gohttp client URL       GETs URL once; prints "local <its own address>" and "body <answer>"
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
)

func main() {
	switch os.Args[1] {
	case "server":
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Printf("remote %s\n", r.RemoteAddr)
			fmt.Fprintf(w, "you are %s", r.RemoteAddr)
		})
		ln, err := net.Listen("tcp", os.Args[2])
		if err != nil {
			fmt.Println("listen:", err)
			os.Exit(1)
		}
		fmt.Println("listening")
		fmt.Println(http.Serve(ln, nil))
	case "client":
		local := ""
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { local = info.Conn.LocalAddr().String() }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", os.Args[2], nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println("get:", err)
			os.Exit(1)
		}
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("local %s\nbody %s\n", local, body)
	}
}
