// Command marquee-ferretdb runs FerretDB (SQLite backend) embedded, for the local stack.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	dir := flag.String("sqlite-dir", "", "directory holding the SQLite databases")
	debug := flag.Bool("debug", false, "log every connection and command (noisy)")
	// SQLite's synchronous pragma: "full" syncs the WAL on every commit, "normal" syncs at
	// checkpoints only (a commit survives a crash of this process, not a power loss).
	synchronous := flag.String("sqlite-synchronous", "full", "SQLite synchronous pragma: full or normal")
	flag.Parse()
	if *dir == "" {
		log.Fatal("--sqlite-dir is required")
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		log.Fatal(err)
	}
	// FerretDB wants a file: URL of an existing directory that ends with a slash.
	url := "file:" + strings.TrimSuffix(abs, "/") + "/"
	switch *synchronous {
	case "full", "normal":
		url += "?_pragma=synchronous(" + *synchronous + ")"
	default:
		log.Fatalf("--sqlite-synchronous must be full or normal, not %q", *synchronous)
	}
	// Warn logs every unsupported command reply (PyMongo's endSessions on each close): too noisy.
	level := slog.LevelError
	if *debug {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// The embedded API never starts FerretDB's telemetry reporter and marks it disabled.
	f, err := ferretdb.New(&ferretdb.Config{
		Logger:    logger,
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Handler:   "sqlite",
		SQLiteURL: url,
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Printf("marquee-ferretdb listening on %s, data in %s\n", *listen, url)
	if err := f.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}
