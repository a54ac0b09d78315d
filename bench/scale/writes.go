package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

func register(args []string) {
	fs := flag.NewFlagSet("register", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "")
	name := fs.String("name", "", "")
	url := fs.String("url", "", "https://host:port of the webhook server")
	caFile := fs.String("ca-file", "", "PEM CA of its serving certificate")
	ns := fs.String("namespace", "longhorn-system", "")
	_ = fs.Parse(args)
	ca, err := os.ReadFile(*caFile)
	if err != nil {
		die("ca: %v", err)
	}
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(config(*kubeconfig))
	fail := admissionv1.Fail
	none := admissionv1.SideEffectClassNone
	timeout := int32(10)
	scope := admissionv1.NamespacedScope
	mutationURL := *url + "/v1/webhook/mutation"
	validationURL := *url + "/v1/webhook/validation"
	rule := func(resource string, op admissionv1.OperationType) []admissionv1.RuleWithOperations {
		return []admissionv1.RuleWithOperations{{
			Operations: []admissionv1.OperationType{op},
			Rule: admissionv1.Rule{APIGroups: []string{group}, APIVersions: []string{version},
				Resources: []string{resource}, Scope: &scope},
		}}
	}
	mutating := &admissionv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: *name},
		Webhooks: []admissionv1.MutatingWebhook{{
			Name: "mutator." + *name + ".bench", ClientConfig: admissionv1.WebhookClientConfig{URL: &mutationURL, CABundle: ca},
			Rules: rule("systembackups", admissionv1.Create), FailurePolicy: &fail, SideEffects: &none,
			TimeoutSeconds: &timeout, AdmissionReviewVersions: []string{"v1"},
		}},
	}
	validating := &admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: *name},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name: "validator." + *name + ".bench", ClientConfig: admissionv1.WebhookClientConfig{URL: &validationURL, CABundle: ca},
			Rules: rule("backups", admissionv1.Delete), FailurePolicy: &fail, SideEffects: &none,
			TimeoutSeconds: &timeout, AdmissionReviewVersions: []string{"v1"},
		}},
	}
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mutating, metav1.CreateOptions{}); err != nil {
		die("mutating: %v", err)
	}
	if _, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, validating, metav1.CreateOptions{}); err != nil {
		die("validating: %v", err)
	}
	// The API server picks configurations up from an informer: wait until a write is seen by it.
	before := webhookCalls(ctx, cs, "mutator."+*name+".bench")
	dc := dynamic.NewForConfigOrDie(config(*kubeconfig))
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		_ = createSystemBackup(ctx, dc, *ns, fmt.Sprintf("%s-probe-%d", *name, i))
		if webhookCalls(ctx, cs, "mutator."+*name+".bench") > before {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	die("the API server did not call webhook %s within 60 s", *name)
}

func unregister(args []string) {
	fs := flag.NewFlagSet("unregister", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "")
	name := fs.String("name", "", "")
	_ = fs.Parse(args)
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(config(*kubeconfig))
	for _, err := range []error{
		cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, *name, metav1.DeleteOptions{}),
		cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, *name, metav1.DeleteOptions{}),
	} {
		if err != nil && !apierrors.IsNotFound(err) {
			die("unregister: %v", err)
		}
	}
	// As for register: the API server stops calling it once its informer has seen the deletion.
	time.Sleep(2 * time.Second)
}

// createSystemBackup creates a SystemBackup shaped as a recurring job's (bodies/systembackup-create.json).
func createSystemBackup(ctx context.Context, dc dynamic.Interface, ns, name string) error {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": group + "/" + version, "kind": "SystemBackup",
		"metadata": map[string]any{"name": name, "namespace": ns,
			"labels":      map[string]any{"recurring-job.longhorn.io/source": "system", "recurring-job.longhorn.io": "nightly"},
			"annotations": map[string]any{"longhorn.io/created-by": "recurring-job"}},
		"spec": map[string]any{"volumeBackupPolicy": ""},
	}}
	_, err := dc.Resource(gvr("systembackups")).Namespace(ns).Create(ctx, u, metav1.CreateOptions{})
	return err
}

type opStats struct {
	Count    int     `json:"count"`
	Errors   int     `json:"errors"`
	FirstErr string  `json:"first_error,omitempty"`
	P50      float64 `json:"p50_ms"`
	P90      float64 `json:"p90_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
	PerSec   float64 `json:"per_s"`
}

func summarize(lat []time.Duration, errs int, firstErr string, span time.Duration) opStats {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := int(p*float64(len(lat))+0.5) - 1
		if i < 0 {
			i = 0
		}
		if i >= len(lat) {
			i = len(lat) - 1
		}
		return float64(lat[i].Microseconds()) / 1000
	}
	return opStats{Count: len(lat), Errors: errs, FirstErr: firstErr, P50: q(0.5), P90: q(0.9), P99: q(0.99),
		Max: q(1), PerSec: float64(len(lat)) / span.Seconds()}
}

func writes(args []string) {
	fs := flag.NewFlagSet("writes", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "")
	ns := fs.String("namespace", "longhorn-system", "")
	clients := fs.Int("clients", 8, "")
	rate := fs.Float64("rate", 0, "writes per second in all; 0: as fast as the clients can")
	duration := fs.Duration("duration", 15*time.Second, "")
	prefix := fs.String("prefix", "w", "object name prefix (unique per run)")
	_ = fs.Parse(args)
	ctx := context.Background()
	cfg := config(*kubeconfig)
	cs := kubernetes.NewForConfigOrDie(cfg)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: *ns}},
		metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		die("namespace: %v", err)
	}
	dc := dynamic.NewForConfigOrDie(cfg)
	backups := dc.Resource(gvr("backups")).Namespace(*ns)

	var next int64 = -1
	start := time.Now()
	end := start.Add(*duration)
	var mu sync.Mutex
	var createLat, deleteLat []time.Duration
	var createErrs, deleteErrs int
	var createFirst, deleteFirst string
	record := func(lat *[]time.Duration, errs *int, first *string, d time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			*errs++
			if *first == "" {
				*first = err.Error()
			}
			return
		}
		*lat = append(*lat, d)
	}
	var wg sync.WaitGroup
	for c := 0; c < *clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := atomic.AddInt64(&next, 1)
				if *rate > 0 {
					at := start.Add(time.Duration(float64(i) / *rate * float64(time.Second)))
					if at.After(end) {
						return
					}
					time.Sleep(time.Until(at))
				} else if time.Now().After(end) {
					return
				}
				name := fmt.Sprintf("%s-%d", *prefix, i)
				if i%2 == 0 {
					t0 := time.Now()
					err := createSystemBackup(ctx, dc, *ns, name)
					record(&createLat, &createErrs, &createFirst, time.Since(t0), err)
					continue
				}
				b := &unstructured.Unstructured{Object: map[string]any{
					"apiVersion": group + "/" + version, "kind": "Backup",
					"metadata": map[string]any{"name": name, "namespace": *ns},
					"spec":     map[string]any{"snapshotName": "snap"},
				}}
				if _, err := backups.Create(ctx, b, metav1.CreateOptions{}); err != nil {
					record(&deleteLat, &deleteErrs, &deleteFirst, 0, fmt.Errorf("create before delete: %w", err))
					continue
				}
				t0 := time.Now()
				err := backups.Delete(ctx, name, metav1.DeleteOptions{})
				record(&deleteLat, &deleteErrs, &deleteFirst, time.Since(t0), err)
			}
		}()
	}
	wg.Wait()
	span := time.Since(start)
	out := map[string]any{
		"clients": *clients, "rate": *rate, "duration_s": span.Seconds(),
		"systembackup_create": summarize(createLat, createErrs, createFirst, span),
		"backup_delete":       summarize(deleteLat, deleteErrs, deleteFirst, span),
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}

func webhookHistograms(ctx context.Context, cs *kubernetes.Clientset) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	apiserverSamples(ctx, cs, "apiserver_admission_webhook_admission_duration_seconds_bucket", func(labels map[string]string, v float64) {
		if out[labels["name"]] == nil {
			out[labels["name"]] = map[string]float64{}
		}
		out[labels["name"]][labels["le"]] += v // summed over operation, rejected and type
	})
	return out
}

func webhookCalls(ctx context.Context, cs *kubernetes.Clientset, name string) float64 {
	return webhookHistograms(ctx, cs)[name]["+Inf"]
}

func webhookMetrics(args []string) {
	fs := flag.NewFlagSet("webhook-metrics", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "")
	_ = fs.Parse(args)
	b, _ := json.Marshal(webhookHistograms(context.Background(), kubernetes.NewForConfigOrDie(config(*kubeconfig))))
	fmt.Println(string(b))
}
