// peer: the webhook most users would write instead of backup-guard, on sigs.k8s.io/controller-runtime.
//
// It serves the same two endpoints as backup-guard (/v1/webhook/mutation, /v1/webhook/validation)
// with controller-runtime's webhook.Server and admission.Webhook, over TLS with the same certificate,
// and applies the same rules to the two requests the benchmark sends:
//   - SystemBackup CREATE/UPDATE (mutating): add the longhorn.io finalizer, default an empty
//     spec.volumeBackupPolicy to if-not-present, and add an owner reference to the default
//     BackupTarget when it exists; the answer is admission.PatchResponseFromRaw(original, mutated).
//   - Backup DELETE (validating): always allowed; a warning when status.backupTargetName is empty,
//     the backup-volume label is missing or the parents are not found.
//
// Like backup-guard started without a kubeconfig, it has no cluster: its BackupTarget lookup is a
// reader that answers NotFound at once, so both servers do the same work per request.
//
// HTTP/2 is off, as kubebuilder scaffolds it (and as backup-guard, which offers only http/1.1).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"crypto/tls"

	uzap "go.uber.org/zap/zapcore"
)

const (
	finalizer            = "longhorn.io"
	defaultTarget        = "default"
	defaultPolicy        = "if-not-present"
	backupVolumeLabel    = "backup-volume"
	crOnlyLabel          = "longhorn.io/delete-custom-resource-only"
	warningCustomResOnly = "only the custom resource will be deleted, the backup store is not touched: "
)

// targetLookup is the seam a real peer would fill with mgr.GetClient() (an informer cache reader).
type targetLookup interface {
	Get(ctx context.Context, namespace, name string) (*BackupTarget, error)
}

// notFound is the cluster-less reader: every BackupTarget is absent.
type notFound struct{}

func (notFound) Get(_ context.Context, _, name string) (*BackupTarget, error) {
	return nil, apierrors.NewNotFound(schema.GroupResource{Group: "longhorn.io", Resource: "backuptargets"}, name)
}

type mutator struct {
	decoder admission.Decoder
	lookup  targetLookup
}

func (m *mutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Kind.Kind != "SystemBackup" || (req.Operation != "CREATE" && req.Operation != "UPDATE") {
		return admission.Allowed("")
	}
	sb := &SystemBackup{}
	if err := m.decoder.Decode(req, sb); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if sb.DeletionTimestamp != nil {
		return admission.Allowed("")
	}
	controllerutil.AddFinalizer(sb, finalizer)
	if sb.Spec.VolumeBackupPolicy == "" {
		sb.Spec.VolumeBackupPolicy = defaultPolicy
	}
	if !hasTargetOwner(sb.OwnerReferences) {
		ns := req.Namespace
		if ns == "" {
			ns = sb.Namespace
		}
		// An error other than NotFound is treated as not found too (the API is unreachable).
		if target, err := m.lookup.Get(ctx, ns, defaultTarget); err == nil && target.UID != "" &&
			target.DeletionTimestamp == nil {
			sb.OwnerReferences = append(sb.OwnerReferences, metav1.OwnerReference{
				APIVersion: groupVersion.String(), Kind: "BackupTarget", Name: target.Name, UID: target.UID,
			})
		}
	}
	mutated, err := json.Marshal(sb)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, mutated)
}

func hasTargetOwner(refs []metav1.OwnerReference) bool {
	for _, r := range refs {
		if r.Kind == "BackupTarget" && r.APIVersion == groupVersion.String() {
			return true
		}
	}
	return false
}

type validator struct {
	decoder admission.Decoder
	lookup  targetLookup
}

func (v *validator) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Kind.Kind != "Backup" {
		return admission.Allowed("")
	}
	switch req.Operation {
	case "DELETE":
		b := &Backup{}
		raw := req.OldObject
		if len(raw.Raw) == 0 {
			raw = req.Object
		}
		if err := v.decoder.DecodeRaw(raw, b); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		if reason := v.missingParent(ctx, req.Namespace, b); reason != "" {
			return admission.Allowed("").WithWarnings(warningCustomResOnly + reason)
		}
		return admission.Allowed("")
	case "CREATE":
		b := &Backup{}
		if err := v.decoder.Decode(req, b); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		if b.Labels[backupVolumeLabel] == "" {
			return admission.Denied("metadata.labels[backup-volume]: Required value: a Backup must name its volume")
		}
		switch b.Spec.BackupMode {
		case "", "full", "incremental":
			return admission.Allowed("")
		}
		return admission.Denied("spec.backupMode: Unsupported value: " + b.Spec.BackupMode)
	}
	return admission.Allowed("")
}

// missingParent says why the Backup's parents count as gone, or "" when they are present.
func (v *validator) missingParent(ctx context.Context, requestNS string, b *Backup) string {
	ns := requestNS
	if ns == "" {
		ns = b.Namespace
	}
	switch {
	case b.Labels[crOnlyLabel] == "true":
		return "it is labelled " + crOnlyLabel
	case b.Status.BackupTargetName == "":
		return "status.backupTargetName is empty (the backup never completed), so its BackupVolume is treated as not found"
	case b.Labels[backupVolumeLabel] == "":
		return "the backup-volume label is missing, so its BackupVolume is treated as not found"
	}
	if _, err := v.lookup.Get(ctx, ns, b.Status.BackupTargetName); err != nil {
		return fmt.Sprintf("BackupTarget %q not found", b.Status.BackupTargetName)
	}
	// A real peer would list BackupVolumes by label here; with no cluster none exist.
	return fmt.Sprintf("BackupVolume for volume %q on target %q not found", b.Labels[backupVolumeLabel],
		b.Status.BackupTargetName)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9444", "TLS listen address")
	certDir := flag.String("cert-dir", "", "directory with tls.crt and tls.key")
	flag.Parse()
	if *certDir == "" {
		fmt.Fprintln(os.Stderr, "peer: --cert-dir is required")
		os.Exit(2)
	}
	logf.SetLogger(zap.New(zap.Level(uzap.WarnLevel)))

	host, portStr, err := net.SplitHostPort(*listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer: --listen:", err)
		os.Exit(2)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer: --listen port:", err)
		os.Exit(2)
	}

	scheme := runtime.NewScheme()
	if err := addToScheme(scheme); err != nil {
		panic(err)
	}
	decoder := admission.NewDecoder(scheme)
	lookup := notFound{}

	server := webhook.NewServer(webhook.Options{
		Host:    host,
		Port:    port,
		CertDir: *certDir,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	})
	server.Register("/v1/webhook/mutation", &webhook.Admission{Handler: &mutator{decoder: decoder, lookup: lookup}})
	server.Register("/v1/webhook/validation", &webhook.Admission{Handler: &validator{decoder: decoder, lookup: lookup}})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := server.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		os.Exit(1)
	}
}
