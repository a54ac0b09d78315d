// scale: the data set and the floor for the uninstall-at-scale benchmark.
//
//	scale seed    --kubeconfig K [--namespace NS] --backups N [--concurrency C]
//	    creates, with the longhorn.io finalizer and no webhook involved (as an older release would):
//	    the Setting deleting-confirmation-flag "true", BackupTarget default, N Backups (half failed:
//	    state Error, empty status.backupTargetName; half Completed on target default), N/20
//	    BackupVolumes, N/10 SystemBackups (state Ready, no owner reference) and N/50
//	    BackupBackingImages. N=10000 gives the 10,000/500/1,000/200.
//	scale floor   --kubeconfig K [--namespace NS] [--concurrency C]
//	    the minimal client: one list per kind, then for every object a DELETE and a merge PATCH that
//	    removes its finalizers, from C workers with no client-side rate limit. Prints a JSON summary.
//	scale count   --kubeconfig K [--namespace NS]     objects left per kind (JSON)
//	scale metrics --kubeconfig K                      apiserver_request_total for longhorn.io (JSON)
//
// For the latency the API server sees (apiserver.py):
//
//	scale register --kubeconfig K --name N --url U --ca-file F
//	    a MutatingWebhookConfiguration (SystemBackup CREATE -> U/v1/webhook/mutation) and a
//	    ValidatingWebhookConfiguration (Backup DELETE -> U/v1/webhook/validation), both named N,
//	    failurePolicy Fail, timeout 10 s; waits until a write goes through the webhook.
//	scale unregister --kubeconfig K --name N          deletes both
//	scale writes  --kubeconfig K [--namespace NS] --clients C --rate R --duration D --prefix P
//	    C goroutines sharing one client-go client send R writes per second in all (0: as fast as
//	    they can), alternating a SystemBackup CREATE and a Backup DELETE (of a Backup each
//	    goroutine created just before, not timed). Prints the latency quantiles of each as JSON.
//	scale webhook-metrics --kubeconfig K
//	    apiserver_admission_webhook_admission_duration_seconds: {name: {le: cumulative count}}
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/flowcontrol"
)

const group, version = "longhorn.io", "v1beta2"

// The kinds the uninstall deletes, in its order (Volumes: none in the data set).
var kinds = []string{"backuptargets", "backupvolumes", "backups", "systembackups", "backupbackingimages"}

func gvr(resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: group, Version: version, Resource: resource}
}

func die(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "scale: "+format+"\n", a...)
	os.Exit(1)
}

func config(kubeconfig string) *rest.Config {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		die("kubeconfig: %v", err)
	}
	cfg.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter() // no client-side limit
	cfg.QPS, cfg.Burst = -1, 0
	cfg.ContentType = "application/json"
	cfg.WarningHandler = rest.NoWarnings{} // "prefer a domain-qualified finalizer name", once per call
	cfg.Timeout = 60 * time.Second
	return cfg
}

// parallel runs fn(i) for i in [0,n) on c workers and returns the first error of each kind seen.
func parallel(n, c int, fn func(i int) error) (errs int64, first error) {
	var next int64 = -1
	var wg sync.WaitGroup
	var once sync.Once
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(atomic.AddInt64(&next, 1))
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					atomic.AddInt64(&errs, 1)
					once.Do(func() { first = err })
				}
			}
		}()
	}
	wg.Wait()
	return errs, first
}

func obj(kind, name, ns string, labels map[string]any, spec map[string]any) *unstructured.Unstructured {
	meta := map[string]any{"name": name, "namespace": ns, "finalizers": []any{"longhorn.io"}}
	if labels != nil {
		meta["labels"] = labels
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": group + "/" + version, "kind": kind, "metadata": meta, "spec": spec,
	}}
}

// createWithStatus creates the object and, when status is given, writes it through /status (the
// CRDs have the status subresource, so a create drops it). AlreadyExists is fine (re-run).
func createWithStatus(ctx context.Context, dc dynamic.Interface, resource, ns string, u *unstructured.Unstructured,
	status map[string]any) error {
	ri := dc.Resource(gvr(resource)).Namespace(ns)
	created, err := ri.Create(ctx, u, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create %s %s: %w", resource, u.GetName(), err)
	}
	if status == nil {
		return nil
	}
	created.Object["status"] = status
	if _, err := ri.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("status %s %s: %w", resource, u.GetName(), err)
	}
	return nil
}

func seed(args []string) {
	fs := flag.NewFlagSet("seed", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "")
	ns := fs.String("namespace", "longhorn-system", "")
	backups := fs.Int("backups", 10000, "")
	conc := fs.Int("concurrency", 32, "")
	_ = fs.Parse(args)
	cfg := config(*kubeconfig)
	dc := dynamic.NewForConfigOrDie(cfg)
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	start := time.Now()

	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: *ns}},
		metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		die("namespace: %v", err)
	}
	setting := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": group + "/" + version, "kind": "Setting",
		"metadata": map[string]any{"name": "deleting-confirmation-flag", "namespace": *ns}, "value": "true",
	}}
	if _, err := dc.Resource(gvr("settings")).Namespace(*ns).Create(ctx, setting, metav1.CreateOptions{}); err != nil &&
		!apierrors.IsAlreadyExists(err) {
		die("setting: %v", err)
	}
	target := obj("BackupTarget", "default", *ns, nil, map[string]any{
		"backupTargetURL": "s3://backupbucket@us-east-1/longhorn", "credentialSecret": "s3-secret", "pollInterval": "5m0s"})
	if err := createWithStatus(ctx, dc, "backuptargets", *ns, target, map[string]any{"available": true}); err != nil {
		die("%v", err)
	}

	nBV, nSB, nBBI := max(*backups/20, 1), max(*backups/10, 1), max(*backups/50, 1)
	type job struct {
		what string
		n    int
		fn   func(i int) error
	}
	jobs := []job{
		{"backupvolumes", nBV, func(i int) error {
			vol := fmt.Sprintf("vol-%05d", i)
			u := obj("BackupVolume", fmt.Sprintf("bv-%05d", i), *ns,
				map[string]any{"backup-target": "default", "backup-volume": vol},
				map[string]any{"backupTargetName": "default", "volumeName": vol})
			return createWithStatus(ctx, dc, "backupvolumes", *ns, u, map[string]any{"lastBackupName": ""})
		}},
		{"backups", *backups, func(i int) error {
			vol := fmt.Sprintf("vol-%05d", i%nBV)
			u := obj("Backup", fmt.Sprintf("backup-%06d", i), *ns,
				map[string]any{"backup-volume": vol, "backup-target": "default"},
				map[string]any{"snapshotName": fmt.Sprintf("snap-%06d", i), "backupMode": "incremental",
					"labels": map[string]any{"KubernetesStatus": `{"pvcName":"data"}`}})
			status := map[string]any{"state": "Completed", "backupTargetName": "default", "volumeName": vol,
				"url": fmt.Sprintf("s3://backupbucket@us-east-1/longhorn?backup=backup-%06d&volume=%s", i, vol)}
			if i%2 == 1 { // half failed: no target name
				status = map[string]any{"state": "Error", "backupTargetName": "", "volumeName": vol,
					"error": "failed to get the backup target: backup target default is not available"}
			}
			return createWithStatus(ctx, dc, "backups", *ns, u, status)
		}},
		{"systembackups", nSB, func(i int) error {
			u := obj("SystemBackup", fmt.Sprintf("sb-%05d", i), *ns, nil,
				map[string]any{"volumeBackupPolicy": "if-not-present"})
			return createWithStatus(ctx, dc, "systembackups", *ns, u, map[string]any{"state": "Ready"})
		}},
		{"backupbackingimages", nBBI, func(i int) error {
			bi := fmt.Sprintf("bi-%04d", i)
			u := obj("BackupBackingImage", fmt.Sprintf("bbi-%04d", i), *ns,
				map[string]any{"backup-target": "default", "backing-image": bi},
				map[string]any{"backingImage": bi, "backupTargetName": "default", "userCreated": true})
			return createWithStatus(ctx, dc, "backupbackingimages", *ns, u, map[string]any{"state": "Completed"})
		}},
	}
	counts := map[string]int{"backuptargets": 1}
	for _, j := range jobs {
		if n, first := parallel(j.n, *conc, j.fn); n > 0 {
			die("%s: %d failures, first: %v", j.what, n, first)
		}
		counts[j.what] = j.n
	}
	out, _ := json.Marshal(map[string]any{"created": counts, "seconds": time.Since(start).Seconds()})
	fmt.Println(string(out))
}

func listNames(ctx context.Context, dc dynamic.Interface, resource, ns string) ([]string, error) {
	var names []string
	opts := metav1.ListOptions{Limit: 500}
	for {
		l, err := dc.Resource(gvr(resource)).Namespace(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, it := range l.Items {
			names = append(names, it.GetName())
		}
		if l.GetContinue() == "" {
			return names, nil
		}
		opts.Continue = l.GetContinue()
	}
}

func floor(args []string) {
	fs := flag.NewFlagSet("floor", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "")
	ns := fs.String("namespace", "longhorn-system", "")
	conc := fs.Int("concurrency", 32, "")
	_ = fs.Parse(args)
	dc := dynamic.NewForConfigOrDie(config(*kubeconfig))
	ctx := context.Background()
	start := time.Now()
	type item struct{ resource, name string }
	var items []item
	for _, r := range kinds {
		names, err := listNames(ctx, dc, r, *ns)
		if err != nil {
			die("list %s: %v", r, err)
		}
		for _, n := range names {
			items = append(items, item{r, n})
		}
	}
	listed := time.Since(start)
	unfinalize := []byte(`{"metadata":{"finalizers":null}}`)
	var deletes, patches int64
	errs, first := parallel(len(items), *conc, func(i int) error {
		it := items[i]
		ri := dc.Resource(gvr(it.resource)).Namespace(*ns)
		err := ri.Delete(ctx, it.name, metav1.DeleteOptions{})
		atomic.AddInt64(&deletes, 1)
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %s/%s: %w", it.resource, it.name, err)
		}
		_, err = ri.Patch(ctx, it.name, types.MergePatchType, unfinalize, metav1.PatchOptions{})
		atomic.AddInt64(&patches, 1)
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("patch %s/%s: %w", it.resource, it.name, err)
		}
		return nil
	})
	elapsed := time.Since(start)
	left := 0
	for _, r := range kinds {
		names, err := listNames(ctx, dc, r, *ns)
		if err != nil {
			die("list %s: %v", r, err)
		}
		left += len(names)
	}
	firstErr := ""
	if first != nil {
		firstErr = first.Error()
	}
	out, _ := json.Marshal(map[string]any{
		"objects": len(items), "deletes": deletes, "patches": patches, "errors": errs, "first_error": firstErr,
		"seconds": elapsed.Seconds(), "list_seconds": listed.Seconds(), "concurrency": *conc, "left": left,
		"calls_per_second": float64(deletes+patches) / (elapsed - listed).Seconds(),
	})
	fmt.Println(string(out))
}

func count(args []string) {
	fs := flag.NewFlagSet("count", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "")
	ns := fs.String("namespace", "longhorn-system", "")
	_ = fs.Parse(args)
	dc := dynamic.NewForConfigOrDie(config(*kubeconfig))
	out := map[string]int{}
	for _, r := range kinds {
		names, err := listNames(context.Background(), dc, r, *ns)
		if err != nil {
			die("list %s: %v", r, err)
		}
		out[r] = len(names)
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}

// A sample line after its metric name: {labels} value.
var sampleRe = regexp.MustCompile(`^\{(.*)\} ([0-9.e+]+)$`)
var labelRe = regexp.MustCompile(`(\w+)="([^"]*)"`)

// apiserverSamples reads the API server's /metrics and calls fn with the labels and value of
// every sample of `metric` (a counter, or one histogram series such as name_bucket).
func apiserverSamples(ctx context.Context, cs *kubernetes.Clientset, metric string, fn func(labels map[string]string, v float64)) {
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		die("metrics: %v", err)
	}
	prefix := metric + "{"
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		m := sampleRe.FindStringSubmatch(line[len(metric):])
		if m == nil {
			continue
		}
		labels := map[string]string{}
		for _, l := range labelRe.FindAllStringSubmatch(m[1], -1) {
			labels[l[1]] = l[2]
		}
		v, _ := strconv.ParseFloat(m[2], 64)
		fn(labels, v)
	}
}

// metrics prints {"VERB resource": count} for group longhorn.io, summed over codes and scopes.
func metrics(args []string) {
	fs := flag.NewFlagSet("metrics", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "")
	_ = fs.Parse(args)
	cs := kubernetes.NewForConfigOrDie(config(*kubeconfig))
	out := map[string]float64{}
	apiserverSamples(context.Background(), cs, "apiserver_request_total", func(labels map[string]string, v float64) {
		if labels["group"] != group {
			return
		}
		key := labels["verb"] + " " + labels["resource"]
		if labels["subresource"] != "" {
			key += "/" + labels["subresource"]
		}
		out[key] += v
	})
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}

func main() {
	if len(os.Args) < 2 {
		die("usage: scale seed|floor|count|metrics [flags]")
	}
	switch os.Args[1] {
	case "seed":
		seed(os.Args[2:])
	case "floor":
		floor(os.Args[2:])
	case "count":
		count(os.Args[2:])
	case "metrics":
		metrics(os.Args[2:])
	case "register":
		register(os.Args[2:])
	case "unregister":
		unregister(os.Args[2:])
	case "writes":
		writes(os.Args[2:])
	case "webhook-metrics":
		webhookMetrics(os.Args[2:])
	default:
		die("unknown command %q", os.Args[1])
	}
}
