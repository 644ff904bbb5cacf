package main

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

// The baseline: the usual chat-style hub. One hub goroutine owns the client
// set; every client has a buffered send channel and two goroutines (read
// and write pumps) and its own 1 KiB read and write buffers; a broadcast is
// a channel send to every client, and a client whose channel is full is
// dropped. Messages are sent in publish order, never conflated.

type chatClient struct {
	conn *websocket.Conn
	send chan []byte
}

type chatHub struct {
	clients    map[*chatClient]bool
	register   chan *chatClient
	unregister chan *chatClient
	broadcast  chan []byte
}

func (h *chatHub) run() {
	for {
		select {
		case c := <-h.register:
			h.clients[c] = true
		case c := <-h.unregister:
			if h.clients[c] {
				delete(h.clients, c)
				close(c.send)
			}
		case msg := <-h.broadcast:
			for c := range h.clients {
				select {
				case c.send <- msg:
				default:
					delete(h.clients, c)
					close(c.send)
				}
			}
		}
	}
}

func runChatServer(addr string) {
	hub := &chatHub{clients: map[*chatClient]bool{}, register: make(chan *chatClient), unregister: make(chan *chatClient), broadcast: make(chan []byte)}
	go hub.run()
	up := websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024, CheckOrigin: func(*http.Request) bool { return true }}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := &chatClient{conn: conn, send: make(chan []byte, 256)}
		hub.register <- c
		go func() { // write pump
			ping := time.NewTicker(25 * time.Second)
			defer func() { ping.Stop(); _ = conn.Close() }()
			for {
				select {
				case msg, ok := <-c.send:
					_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
					if !ok {
						_ = conn.WriteMessage(websocket.CloseMessage, nil)
						return
					}
					if conn.WriteMessage(websocket.TextMessage, msg) != nil {
						return
					}
				case <-ping.C:
					if conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second)) != nil {
						return
					}
				}
			}
		}()
		go func() { // read pump
			defer func() { hub.unregister <- c; _ = conn.Close() }()
			conn.SetReadLimit(4096)
			for {
				if _, _, err := conn.ReadMessage(); err != nil {
					return
				}
			}
		}()
	})
	mux.HandleFunc("/publish", func(w http.ResponseWriter, r *http.Request) {
		v, _ := strconv.ParseInt(r.URL.Query().Get("v"), 10, 64)
		hub.broadcast <- []byte(fmt.Sprintf(`{"itemId":"item","available":%d,"reserved":0,"sold":%d,"version":"%d"}`, 1_000_000-v, v, v))
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "chat server:", err)
		os.Exit(1)
	}
}
