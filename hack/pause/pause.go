// The sandbox ("pause") process of every pod on the local node: it holds the pod's namespaces
// open, reaps orphaned children (it is PID 1 of the pod when the PID namespace is shared) and
// exits cleanly on SIGINT/SIGTERM, as the upstream pause program does. Built here because no
// image registry is reachable from this machine.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println("pause (cloudsso-mfa-operator local node)")
		return
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		// Reap every child that has exited; one SIGCHLD may stand for several.
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
