// A Go program for the integration tests: Go makes its socket calls as raw syscalls (no libc to
// preload into) and preempts goroutines with SIGURG about every 10 ms, so it exercises exactly what an
// LD_PRELOAD shim cannot reach.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
)

func main() {
	switch os.Args[1] {
	case "serve":
		serve(os.Args[2])
	case "clients":
		n, _ := strconv.Atoi(os.Args[3])
		workers, _ := strconv.Atoi(os.Args[4])
		clients(os.Args[2], n, workers)
	}
}

func serve(addr string) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	fmt.Println("listening", l.Addr())
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Println("accept:", err)
			os.Exit(1)
		}
		go func(c net.Conn) {
			defer c.Close()
			io.Copy(c, c)
		}(c)
	}
}

// clients makes n connections from `workers` goroutines, each writing and reading back 64 bytes,
// and burns CPU in between so that the runtime preempts with signals.
func clients(addr string, n, workers int) {
	var failures, done int64
	var first atomic.Value
	var wg sync.WaitGroup
	next := int64(-1)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for atomic.AddInt64(&next, 1) < int64(n) {
				spin := 0
				for i := 0; i < 20000; i++ {
					spin += i * i
				}
				_ = spin
				c, err := net.Dial("tcp", addr)
				if err != nil {
					atomic.AddInt64(&failures, 1)
					first.CompareAndSwap(nil, err.Error())
					continue
				}
				local := c.LocalAddr().String()
				remote := c.RemoteAddr().String()
				if remote != addr {
					atomic.AddInt64(&failures, 1)
					first.CompareAndSwap(nil, "remote "+remote+" local "+local)
				}
				copy(buf, []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"))
				if _, err := c.Write(buf); err == nil {
					_, err = io.ReadFull(c, buf)
				}
				if err != nil {
					atomic.AddInt64(&failures, 1)
					first.CompareAndSwap(nil, err.Error())
				}
				c.Close()
				atomic.AddInt64(&done, 1)
			}
		}()
	}
	wg.Wait()
	fmt.Printf("{\"done\": %d, \"failures\": %d, \"first\": %q}\n", done, failures, fmt.Sprint(first.Load()))
}
