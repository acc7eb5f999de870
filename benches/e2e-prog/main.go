// Command benchprog: the program scripts/bench-e2e runs on arches for which
// Debian 12 has no busybox-static (riscv64). It is built from this file by
// the benchmark itself (CGO_ENABLED=0, one GOARCH each: a static program,
// no C library), and answers the three applets the benchmark asks of
// busybox, chosen by its first argument as busybox chooses them:
//
//	benchprog true           exit 0 (the timed exec)
//	benchprog uname -m       print the machine name (the routing check)
//	benchprog sleep SECONDS  sleep (the memory measurement)
//
// Only the os, strconv, syscall and time packages: a small program, whose
// start is the Go runtime's and little else.
package main

import (
	"os"
	"strconv"
	"syscall"
	"time"
)

func fail(msg string) {
	os.Stderr.WriteString("benchprog: " + msg + "\n")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: benchprog true | uname -m | sleep SECONDS")
	}
	switch os.Args[1] {
	case "true":
		os.Exit(0)
	case "uname":
		if len(os.Args) != 3 || os.Args[2] != "-m" {
			fail("usage: benchprog uname -m")
		}
		var u syscall.Utsname
		if err := syscall.Uname(&u); err != nil {
			fail("uname: " + err.Error())
		}
		// Machine is [65]int8 on some arches and [65]uint8 on others.
		b := make([]byte, 0, len(u.Machine))
		for _, c := range u.Machine {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		os.Stdout.Write(append(b, '\n'))
	case "sleep":
		if len(os.Args) != 3 {
			fail("usage: benchprog sleep SECONDS")
		}
		n, err := strconv.Atoi(os.Args[2])
		if err != nil || n < 0 {
			fail("sleep: not a number of seconds: " + os.Args[2])
		}
		time.Sleep(time.Duration(n) * time.Second)
	default:
		fail("unknown applet " + strconv.Quote(os.Args[1]))
	}
}
