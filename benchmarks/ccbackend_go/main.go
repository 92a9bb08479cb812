// Command ccload loads a cc-backend checkpoint directory the way
// cc-backend's metric store loads it on startup (pkg/metricstore:
// FromCheckpoint, fromCheckpoint, findFiles, loadBinaryFile,
// readBinaryLevel, loadFile, loadWALFile, readWALRecord, parseWALPayload,
// findLevelOrCreate, newBuffer and buffer.write, with its buffer pool), so
// that benchmarks/ccbackend.py can compare metricstore's loader with it on
// the same files in the same run. Standard library only (Go 1.19), so it
// builds without a module proxy. It loads binary snapshots and current.wal
// (the benchmark's trees hold nothing else) and times the load alone.
//
//	go build -o ccload main.go
//	ccload -root DIR -workers 2 -freq 10 -metrics a,b,c [-from 0]
//
// Prints {"seconds": s, "files": n, "values": v, "wal_records": r}: the
// load's wall time, the files loaded, the non-NaN values in the buffers
// after it, and the log records replayed.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	bufferCap     = 512
	snapFileMagic = 0xCC5B0001
	walFileMagic  = 0xCC1DA701
	walRecMagic   = 0xCC1DA7A1
)

// Float is cc-lib's schema.Float.
type Float float64

var nan = Float(math.NaN())

type metricConfig struct {
	frequency int64
	offset    int
}

type memoryStore struct {
	metrics map[string]metricConfig
	root    level
}

type level struct {
	lock     sync.RWMutex
	metrics  []*buffer
	children map[string]*level
}

type buffer struct {
	prev, next *buffer
	data       []Float
	frequency  int64
	start      int64
	archived   bool
	closed     bool
	lastUsed   int64
}

type bufferPool struct {
	mu   sync.Mutex
	pool []*buffer
}

func (p *bufferPool) get() *buffer {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.pool)
	if n == 0 {
		return &buffer{data: make([]Float, 0, bufferCap)}
	}
	b := p.pool[n-1]
	p.pool[n-1] = nil
	p.pool = p.pool[:n-1]
	return b
}

var pool = &bufferPool{}

func newBuffer(ts, freq int64) *buffer {
	b := pool.get()
	b.frequency = freq
	b.start = ts - (freq / 2)
	b.prev = nil
	b.next = nil
	b.archived = false
	b.closed = false
	b.data = b.data[:0]
	return b
}

func (b *buffer) write(ts int64, value Float) (*buffer, error) {
	if ts < b.start {
		return nil, errors.New("cannot write value to buffer from past")
	}
	idx := int((ts - b.start) / b.frequency)
	if idx >= cap(b.data) {
		newbuf := newBuffer(ts, b.frequency)
		newbuf.prev = b
		b.next = newbuf
		b = newbuf
		idx = 0
	}
	if idx < len(b.data) {
		b.data[idx] = value
		return b, nil
	}
	for i := len(b.data); i < idx; i++ {
		b.data = append(b.data, nan)
	}
	b.data = append(b.data, value)
	return b, nil
}

func (l *level) findLevelOrCreate(selector []string, nMetrics int) *level {
	if len(selector) == 0 {
		return l
	}
	l.lock.RLock()
	var child *level
	var ok bool
	if l.children == nil {
		l.lock.RUnlock()
	} else {
		child, ok = l.children[selector[0]]
		l.lock.RUnlock()
		if ok {
			return child.findLevelOrCreate(selector[1:], nMetrics)
		}
	}
	l.lock.Lock()
	if l.children != nil {
		child, ok = l.children[selector[0]]
		if ok {
			l.lock.Unlock()
			return child.findLevelOrCreate(selector[1:], nMetrics)
		}
	}
	child = &level{metrics: make([]*buffer, nMetrics)}
	if l.children != nil {
		l.children[selector[0]] = child
	} else {
		l.children = map[string]*level{selector[0]: child}
	}
	l.lock.Unlock()
	return child.findLevelOrCreate(selector[1:], nMetrics)
}

type checkpointMetrics struct {
	Data      []Float
	Frequency int64
	Start     int64
}

type checkpointFile struct {
	Metrics  map[string]*checkpointMetrics
	Children map[string]*checkpointFile
	From, To int64
}

func (l *level) loadFile(cf *checkpointFile, m *memoryStore) error {
	for name, metric := range cf.Metrics {
		n := len(metric.Data)
		b := &buffer{
			frequency: metric.Frequency,
			start:     metric.Start,
			data:      metric.Data[0:n:n],
			archived:  true,
		}
		minfo, ok := m.metrics[name]
		if !ok {
			continue
		}
		prev := l.metrics[minfo.offset]
		if prev == nil {
			l.metrics[minfo.offset] = b
		} else {
			if prev.start > b.start {
				return fmt.Errorf("buffer start time %d is before previous buffer start %d", b.start, prev.start)
			}
			b.prev = prev
			prev.next = b
		}
		l.metrics[minfo.offset] = b
	}
	if len(cf.Children) > 0 && l.children == nil {
		l.children = make(map[string]*level)
	}
	for sel, childCf := range cf.Children {
		child, ok := l.children[sel]
		if !ok {
			child = &level{metrics: make([]*buffer, len(m.metrics))}
			l.children[sel] = child
		}
		if err := child.loadFile(childCf, m); err != nil {
			return err
		}
	}
	return nil
}

func readString16(r io.Reader) (string, error) {
	var sLen uint16
	if err := binary.Read(r, binary.LittleEndian, &sLen); err != nil {
		return "", err
	}
	buf := make([]byte, sLen)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", err
	}
	return string(buf), nil
}

func readBinaryLevel(r io.Reader) (*checkpointFile, error) {
	cf := &checkpointFile{
		Metrics:  make(map[string]*checkpointMetrics),
		Children: make(map[string]*checkpointFile),
	}
	var numMetrics uint32
	if err := binary.Read(r, binary.LittleEndian, &numMetrics); err != nil {
		return nil, err
	}
	for i := uint32(0); i < numMetrics; i++ {
		name, err := readString16(r)
		if err != nil {
			return nil, err
		}
		var freq, start int64
		if err := binary.Read(r, binary.LittleEndian, &freq); err != nil {
			return nil, err
		}
		if err := binary.Read(r, binary.LittleEndian, &start); err != nil {
			return nil, err
		}
		var numValues uint32
		if err := binary.Read(r, binary.LittleEndian, &numValues); err != nil {
			return nil, err
		}
		data := make([]Float, numValues)
		for j := uint32(0); j < numValues; j++ {
			var bits uint32
			if err := binary.Read(r, binary.LittleEndian, &bits); err != nil {
				return nil, err
			}
			data[j] = Float(math.Float32frombits(bits))
		}
		cf.Metrics[name] = &checkpointMetrics{Frequency: freq, Start: start, Data: data}
	}
	var numChildren uint32
	if err := binary.Read(r, binary.LittleEndian, &numChildren); err != nil {
		return nil, err
	}
	for i := uint32(0); i < numChildren; i++ {
		childName, err := readString16(r)
		if err != nil {
			return nil, err
		}
		child, err := readBinaryLevel(r)
		if err != nil {
			return nil, err
		}
		cf.Children[childName] = child
	}
	return cf, nil
}

func (l *level) loadBinaryFile(m *memoryStore, f *os.File, from int64) error {
	br := bufio.NewReader(f)
	var magic uint32
	if err := binary.Read(br, binary.LittleEndian, &magic); err != nil {
		return err
	}
	if magic != snapFileMagic {
		return fmt.Errorf("invalid magic 0x%08X", magic)
	}
	var fileFrom, fileTo int64
	if err := binary.Read(br, binary.LittleEndian, &fileFrom); err != nil {
		return err
	}
	if err := binary.Read(br, binary.LittleEndian, &fileTo); err != nil {
		return err
	}
	if fileTo != 0 && fileTo < from {
		return nil
	}
	cf, err := readBinaryLevel(br)
	if err != nil {
		return err
	}
	cf.From, cf.To = fileFrom, fileTo
	return l.loadFile(cf, m)
}

type walMessage struct {
	MetricName string
	Timestamp  int64
	Selector   []string
	Value      Float
}

func readWALRecord(r io.Reader) (*walMessage, error) {
	var magic uint32
	if err := binary.Read(r, binary.LittleEndian, &magic); err != nil {
		if err == io.EOF {
			return nil, nil
		}
		return nil, err
	}
	if magic != walRecMagic {
		return nil, fmt.Errorf("invalid record magic 0x%08X", magic)
	}
	var payloadLen uint32
	if err := binary.Read(r, binary.LittleEndian, &payloadLen); err != nil {
		return nil, err
	}
	if payloadLen > 1<<20 {
		return nil, fmt.Errorf("record payload too large: %d bytes", payloadLen)
	}
	payload := make([]byte, payloadLen)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, err
	}
	var storedCRC uint32
	if err := binary.Read(r, binary.LittleEndian, &storedCRC); err != nil {
		return nil, err
	}
	if crc32.ChecksumIEEE(payload) != storedCRC {
		return nil, errors.New("CRC mismatch")
	}
	return parseWALPayload(payload)
}

func parseWALPayload(payload []byte) (*walMessage, error) {
	if len(payload) < 8+2+1+4 {
		return nil, fmt.Errorf("payload too short: %d bytes", len(payload))
	}
	offset := 0
	ts := int64(binary.LittleEndian.Uint64(payload[offset : offset+8]))
	offset += 8
	if offset+2 > len(payload) {
		return nil, errors.New("metric name length overflows payload")
	}
	mLen := int(binary.LittleEndian.Uint16(payload[offset : offset+2]))
	offset += 2
	if offset+mLen > len(payload) {
		return nil, errors.New("metric name overflows payload")
	}
	metricName := string(payload[offset : offset+mLen])
	offset += mLen
	if offset >= len(payload) {
		return nil, errors.New("selector count overflows payload")
	}
	selCount := int(payload[offset])
	offset++
	selectors := make([]string, selCount)
	for i := 0; i < selCount; i++ {
		if offset >= len(payload) {
			return nil, errors.New("selector length overflows payload")
		}
		sLen := int(payload[offset])
		offset++
		if offset+sLen > len(payload) {
			return nil, errors.New("selector data overflows payload")
		}
		selectors[i] = string(payload[offset : offset+sLen])
		offset += sLen
	}
	if offset+4 > len(payload) {
		return nil, errors.New("value overflows payload")
	}
	bits := binary.LittleEndian.Uint32(payload[offset : offset+4])
	return &walMessage{
		MetricName: metricName,
		Timestamp:  ts,
		Selector:   selectors,
		Value:      Float(math.Float32frombits(bits)),
	}, nil
}

func joinSelector(sel []string) string {
	if len(sel) == 0 {
		return ""
	}
	var result strings.Builder
	result.WriteString(sel[0])
	for i := 1; i < len(sel); i++ {
		result.WriteString("\x00" + sel[i])
	}
	return result.String()
}

var walRecords int64

func (l *level) loadWALFile(m *memoryStore, f *os.File, from int64) error {
	br := bufio.NewReader(f)
	var fileMagic uint32
	if err := binary.Read(br, binary.LittleEndian, &fileMagic); err != nil {
		if err == io.EOF {
			return nil
		}
		return err
	}
	if fileMagic != walFileMagic {
		return fmt.Errorf("invalid file magic 0x%08X", fileMagic)
	}
	lvlCache := make(map[string]*level)
	replayed := int64(0)
	for {
		msg, err := readWALRecord(br)
		if err != nil || msg == nil {
			break
		}
		if msg.Timestamp < from {
			continue
		}
		minfo, ok := m.metrics[msg.MetricName]
		if !ok {
			continue
		}
		cacheKey := joinSelector(msg.Selector)
		lvl, ok := lvlCache[cacheKey]
		if !ok {
			lvl = l.findLevelOrCreate(msg.Selector, len(m.metrics))
			lvlCache[cacheKey] = lvl
		}
		lvl.lock.Lock()
		b := lvl.metrics[minfo.offset]
		if b == nil {
			b = newBuffer(msg.Timestamp, minfo.frequency)
			lvl.metrics[minfo.offset] = b
		}
		nb, writeErr := b.write(msg.Timestamp, msg.Value)
		if writeErr == nil && b != nb {
			lvl.metrics[minfo.offset] = nb
		}
		if writeErr == nil {
			replayed++
		}
		lvl.lock.Unlock()
	}
	atomic.AddInt64(&walRecords, replayed)
	return nil
}

func parseTimestampFromFilename(name string) (int64, error) {
	switch {
	case strings.HasSuffix(name, ".json"):
		return strconv.ParseInt(name[:len(name)-5], 10, 64)
	case strings.HasSuffix(name, ".bin"):
		return strconv.ParseInt(name[:len(name)-4], 10, 64)
	}
	return 0, fmt.Errorf("unknown checkpoint extension for file %q", name)
}

func findFiles(direntries []fs.DirEntry, t int64) ([]string, error) {
	nums := map[string]int64{}
	for _, e := range direntries {
		ts, err := parseTimestampFromFilename(e.Name())
		if err != nil {
			return nil, err
		}
		nums[e.Name()] = ts
	}
	sort.Slice(direntries, func(i, j int) bool {
		return nums[direntries[i].Name()] < nums[direntries[j].Name()]
	})
	if len(nums) == 0 {
		return nil, nil
	}
	filenames := make([]string, 0)
	for i, e := range direntries {
		ts1 := nums[e.Name()]
		if t <= ts1 {
			filenames = append(filenames, e.Name())
		}
		if i == len(direntries)-1 {
			continue
		}
		ts2 := nums[direntries[i+1].Name()]
		if ts1 < t && t < ts2 {
			filenames = append(filenames, e.Name())
		}
	}
	return filenames, nil
}

func (l *level) fromCheckpoint(m *memoryStore, dir string, from int64) (int, error) {
	direntries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	allFiles := make([]fs.DirEntry, 0)
	var walEntry fs.DirEntry
	filesLoaded := 0
	for _, e := range direntries {
		if e.IsDir() {
			continue
		}
		name := e.Name()
		if strings.HasSuffix(name, ".bin") {
			allFiles = append(allFiles, e)
		} else if name == "current.wal" {
			walEntry = e
		}
	}
	files, err := findFiles(allFiles, from)
	if err != nil {
		return 0, err
	}
	for _, filename := range files {
		err := func() error {
			f, err := os.Open(path.Join(dir, filename))
			if err != nil {
				return err
			}
			defer f.Close()
			return l.loadBinaryFile(m, f, from)
		}()
		if err != nil {
			return filesLoaded, err
		}
		filesLoaded++
	}
	if walEntry != nil {
		err := func() error {
			f, err := os.Open(path.Join(dir, walEntry.Name()))
			if err != nil {
				return err
			}
			defer f.Close()
			return l.loadWALFile(m, f, from)
		}()
		if err == nil {
			filesLoaded++
		}
	}
	return filesLoaded, nil
}

func (m *memoryStore) fromCheckpoint(dir string, from int64, workers int) (int, error) {
	var wg sync.WaitGroup
	work := make(chan [2]string, workers*4)
	n, errs := int32(0), int32(0)
	wg.Add(workers)
	for w := 0; w < workers; w++ {
		go func() {
			defer wg.Done()
			for host := range work {
				lvl := m.root.findLevelOrCreate(host[:], len(m.metrics))
				nn, err := lvl.fromCheckpoint(m, filepath.Join(dir, host[0], host[1]), from)
				if err != nil {
					fmt.Fprintf(os.Stderr, "%s/%s: %v\n", host[0], host[1], err)
					atomic.AddInt32(&errs, 1)
				}
				atomic.AddInt32(&n, int32(nn))
			}
		}()
	}
	clusters, err := os.ReadDir(dir)
	if err == nil {
		for _, c := range clusters {
			hosts, err := os.ReadDir(filepath.Join(dir, c.Name()))
			if err != nil {
				break
			}
			for _, h := range hosts {
				work <- [2]string{c.Name(), h.Name()}
			}
		}
	}
	close(work)
	wg.Wait()
	if errs > 0 {
		return int(n), fmt.Errorf("%d errors", errs)
	}
	return int(n), err
}

func (l *level) countValues() int64 {
	total := int64(0)
	for _, b := range l.metrics {
		for ; b != nil; b = b.prev {
			for _, v := range b.data {
				if v == v {
					total++
				}
			}
		}
	}
	for _, c := range l.children {
		total += c.countValues()
	}
	return total
}

func main() {
	root := flag.String("root", "", "checkpoint directory (<cluster>/<host>/)")
	workers := flag.Int("workers", 2, "loader goroutines (cc-backend's num-workers)")
	freq := flag.Int64("freq", 10, "every metric's frequency in seconds")
	names := flag.String("metrics", "", "comma-separated metric names, all at -freq")
	from := flag.Int64("from", 0, "the load cutoff (cc-backend's now - retention)")
	flag.Parse()
	m := &memoryStore{metrics: map[string]metricConfig{}}
	for i, name := range strings.Split(*names, ",") {
		if name != "" {
			m.metrics[name] = metricConfig{frequency: *freq, offset: i}
		}
	}
	began := time.Now()
	files, err := m.fromCheckpoint(*root, *from, *workers)
	seconds := time.Since(began).Seconds()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, _ := json.Marshal(map[string]any{
		"seconds":     seconds,
		"files":       files,
		"values":      m.root.countValues(),
		"wal_records": walRecords,
	})
	fmt.Println(string(out))
}
