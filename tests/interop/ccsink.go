// ccsink posts line protocol the way cc-metric-collector's HTTP sink does,
// for tests/test_serve_takes_what_the_go_collector_sends.py.
//
// It encodes lines as cc-lib's encoder does (tags sorted by key, floats
// with strconv 'g' and shortest precision, integers with an "i" suffix,
// timestamps in seconds), batches one node's lines of one tick into one
// body, and POSTs each batch over one keep-alive connection
// (MaxIdleConns 1, as the sink) with "Authorization: Bearer <jwt>",
// expecting exactly 200. The token is minted here with Ed25519 from the
// seed given in hex. Standard library only (Go 1.19).
package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"strconv"
	"time"
)

type metric struct {
	name  string
	tags  map[string]string
	value interface{}
	ts    int64
}

// encode appends one line as cc-lib's EncoderAdd writes it.
func encode(buf []byte, m metric) []byte {
	buf = append(buf, m.name...)
	keys := make([]string, 0, len(m.tags))
	for k := range m.tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		buf = append(buf, ',')
		buf = append(buf, k...)
		buf = append(buf, '=')
		buf = append(buf, m.tags[k]...)
	}
	buf = append(buf, " value="...)
	switch v := m.value.(type) {
	case float64:
		buf = strconv.AppendFloat(buf, v, 'g', -1, 64)
	case int64:
		buf = strconv.AppendInt(buf, v, 10)
		buf = append(buf, 'i')
	}
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, m.ts, 10)
	return append(buf, '\n')
}

// Value is the sample of (node, thread, tick, metric index); the test
// computes the same numbers.
func value(node, thread, tick, k int) interface{} {
	switch k {
	case 0:
		return float64(node*1000+thread) + float64(tick)/8
	case 1:
		return int64(node*100000 + thread*100 + tick)
	default:
		return math.Ldexp(float64(node*4096+thread*16+tick), 10) // large: 'g' writes e+06
	}
}

func token(seedHex string) string {
	seed, err := hex.DecodeString(seedHex)
	if err != nil || len(seed) != ed25519.SeedSize {
		fmt.Fprintln(os.Stderr, "ccsink: -seed must be 32 bytes of hex")
		os.Exit(2)
	}
	key := ed25519.NewKeyFromSeed(seed)
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"EdDSA","typ":"JWT"}`))
	claims, _ := json.Marshal(map[string]interface{}{
		"sub":   "collector",
		"roles": []string{"api"},
		"exp":   time.Now().Add(time.Hour).Unix(),
	})
	payload := enc.EncodeToString(claims)
	signature := ed25519.Sign(key, []byte(header+"."+payload))
	return header + "." + payload + "." + enc.EncodeToString(signature)
}

func main() {
	url := flag.String("url", "", "the write endpoint, with ?cluster=")
	seed := flag.String("seed", "", "Ed25519 seed (hex) to sign the token with")
	nodes := flag.Int("nodes", 4, "nodes")
	threads := flag.Int("threads", 16, "hwthreads per node")
	ticks := flag.Int("ticks", 10, "ticks")
	start := flag.Int64("start", 6000, "first timestamp (s)")
	step := flag.Int64("step", 60, "seconds between ticks")
	flag.Parse()

	names := []string{"cpu_load", "instructions", "mem_bw"}
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:    1, // "We will only ever talk to one host"
			IdleConnTimeout: 120 * time.Second,
		},
	}
	bearer := "Bearer " + token(*seed)
	posts, lines := 0, 0
	var buf []byte
	for tick := 0; tick < *ticks; tick++ {
		ts := *start + int64(tick)**step
		for node := 0; node < *nodes; node++ {
			buf = buf[:0]
			host := fmt.Sprintf("n%03d", node)
			for thread := 0; thread < *threads; thread++ {
				for k, name := range names {
					buf = encode(buf, metric{
						name: name,
						tags: map[string]string{
							"hostname": host, "type": "hwthread",
							"type-id": strconv.Itoa(thread),
						},
						value: value(node, thread, tick, k),
						ts:    ts,
					})
					lines++
				}
			}
			// A metric the store does not define, as collectors send.
			buf = encode(buf, metric{"ib_recv", map[string]string{"hostname": host}, 1.5, ts})
			lines++
			req, err := http.NewRequest(http.MethodPost, *url, bytes.NewReader(buf))
			if err != nil {
				fmt.Fprintln(os.Stderr, "ccsink:", err)
				os.Exit(1)
			}
			req.Header.Set("Authorization", bearer)
			res, err := client.Do(req)
			if err != nil {
				fmt.Fprintln(os.Stderr, "ccsink:", err)
				os.Exit(1)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				fmt.Fprintf(os.Stderr, "ccsink: status %d: %s\n", res.StatusCode, body)
				os.Exit(1)
			}
			posts++
		}
	}
	fmt.Printf("{\"posts\":%d,\"lines\":%d}\n", posts, lines)
}
