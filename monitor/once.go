package monitor

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ct-exporter/ct_exporter/config"
	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/loglist"
	"github.com/ct-exporter/ct_exporter/state"
)

// OnceResult is what one poll of every source found.
type OnceResult struct {
	// Failed names each source whose poll failed, with why.
	Failed map[string]error
	// Polled lists the sources polled, log list logs included.
	Polled []string
}

// PollOnce polls every source of cfg once, concurrently, and returns when
// all are done: log lists first, then the logs they name with the other
// sources. Each issuance new to the state is passed to onNew as it is
// committed. This is ct_exporter check; the exporter itself uses Start.
func PollOnce(ctx context.Context, cfg *config.Config, m *Monitor, onNew func(*state.Issuance, []state.Match)) (*OnceResult, error) {
	if _, err := m.setPolicy(cfg); err != nil {
		return nil, err
	}
	res := &OnceResult{Failed: map[string]error{}}
	var mu sync.Mutex
	discovered := map[string][]loglist.Log{}
	poll := func(sources []spec) {
		var wg sync.WaitGroup
		for _, s := range sources {
			src, err := newSource(s, nil, func(list string, logs []loglist.Log) {
				mu.Lock()
				discovered[list] = logs
				mu.Unlock()
			})
			mu.Lock()
			res.Polled = append(res.Polled, s.Name)
			if err != nil {
				res.Failed[s.Name] = err
				mu.Unlock()
				continue
			}
			mu.Unlock()
			env := &ctsource.Env{
				Recorder: m.rec,
				Logger:   m.logger.With("source_name", s.Name),
				NewIssuance: func(is *state.Issuance, fresh []state.Match) {
					mu.Lock()
					defer mu.Unlock()
					onNew(is, fresh)
				},
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer src.Close()
				if err := src.Poll(ctx, env); err != nil {
					mu.Lock()
					res.Failed[s.Name] = err
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}

	var lists []spec
	for _, s := range cfg.Sources {
		if s.Type == config.TypeLogList {
			lists = append(lists, spec{Source: s})
		}
	}
	poll(lists)
	// Then everything else, as the exporter would follow it (every shard).
	var sources []spec
	for _, s := range sourceSet(cfg, discovered, Shard{}) {
		if s.Type != config.TypeLogList {
			sources = append(sources, s)
		}
	}
	poll(sources)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("check: %w", err)
	}
	return res, nil
}

// Errors joins the failures, for printing.
func (r *OnceResult) Errors() error {
	var errs []error
	for name, err := range r.Failed {
		errs = append(errs, fmt.Errorf("source %s: %w", name, err))
	}
	return errors.Join(errs...)
}
