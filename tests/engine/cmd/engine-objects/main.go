// Command engine-objects creates the storage engine's custom resources in a test cluster through
// the engine's own Go types and typed clientset (github.com/longhorn/longhorn-manager v1.10.0), so a
// fixture that does not match the engine's field names or types fails before it reaches the API
// server.
//
//	engine-objects [--kubeconfig K] [--namespace N] apply   < [ {"kind": ..., "metadata": ..., "spec": ..., "status": ...}, ... ]
//	engine-objects [--kubeconfig K] [--namespace N] sync --target NAME < {"volumes": [{"name": "vol-1", "backups": ["backup-1"]}]}
//	engine-objects [--kubeconfig K] [--namespace N] get KIND NAME
//
// Flags may also follow the subcommand. --kubeconfig defaults to $KUBECONFIG, --namespace to
// longhorn-system. Results go to stdout as JSON (apply and sync: an array; get: one object): each
// object as the API server holds it after the writes (read back with a GET, so a field the CRD
// version prunes is absent, not a Go zero value), without metadata.managedFields. API warnings go
// to stderr as "Warning: ..." lines. Any error exits non-zero with a line on stderr that says which
// item failed and why (the API server's message for API errors, including admission denials).
// Objects created before a failing item are left in place.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	longhorn "github.com/longhorn/longhorn-manager/k8s/pkg/apis/longhorn/v1beta2"
	lhclientset "github.com/longhorn/longhorn-manager/k8s/pkg/client/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	kjson "sigs.k8s.io/json"
)

const (
	finalizer        = "longhorn.io"   // the engine's finalizer (webhook/common: longhornFinalizerKey)
	labelTarget      = "backup-target" // types.LonghornLabelBackupTarget
	labelVolume      = "backup-volume" // types.LonghornLabelBackupVolume
	labelAccessMode  = "longhorn.io/volume-access-mode"
	defaultNamespace = "longhorn-system"
	updateAttempts   = 10
)

// strictDecode decodes data into v the way the API server's strict field validation does
// (sigs.k8s.io/json, as used by k8s.io/apimachinery): field names match case-sensitively, and an
// unknown or duplicated field is an error naming its path (e.g. `unknown field "spec.standby"`).
// encoding/json's DisallowUnknownFields is not enough here: it matches names case-insensitively,
// so `spec.standby` would silently fill the engine's `spec.Standby`.
func strictDecode(data []byte, v any) error {
	strictErrs, err := kjson.UnmarshalStrict(data, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	if len(strictErrs) > 0 {
		msgs := make([]string, len(strictErrs))
		for i, e := range strictErrs {
			msgs[i] = e.Error()
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}

// object is what every engine type is: a metav1.Object and a runtime.Object.
type object interface {
	metav1.Object
	runtime.Object
}

// typedClient is the part of the engine's generated typed clients used here (every kind below has
// a status subresource in all four pinned CRD versions, so each client has UpdateStatus).
type typedClient[P any] interface {
	Create(context.Context, P, metav1.CreateOptions) (P, error)
	Get(context.Context, string, metav1.GetOptions) (P, error)
	UpdateStatus(context.Context, P, metav1.UpdateOptions) (P, error)
}

// kindOps creates, reads and updates the status of one kind, hiding its Go type.
type kindOps struct {
	plural       string
	decode       func(data []byte) (object, error)
	create       func(ctx context.Context, obj object) (object, error)
	get          func(ctx context.Context, name string) (object, error)
	updateStatus func(ctx context.Context, obj object) (object, error)
}

func opsFor[T any, P interface {
	*T
	object
}](plural string, c typedClient[P]) kindOps {
	return kindOps{
		plural: plural,
		decode: func(data []byte) (object, error) {
			obj := P(new(T))
			return obj, strictDecode(data, obj)
		},
		create: func(ctx context.Context, obj object) (object, error) {
			return c.Create(ctx, obj.(P), metav1.CreateOptions{})
		},
		get: func(ctx context.Context, name string) (object, error) {
			return c.Get(ctx, name, metav1.GetOptions{})
		},
		updateStatus: func(ctx context.Context, obj object) (object, error) {
			return c.UpdateStatus(ctx, obj.(P), metav1.UpdateOptions{})
		},
	}
}

type tool struct {
	namespace string
	cs        lhclientset.Interface
	kinds     map[string]kindOps
}

func newTool(kubeconfig, namespace string) (*tool, error) {
	if kubeconfig == "" {
		return nil, errors.New("no kubeconfig: pass --kubeconfig or set KUBECONFIG")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	// API warnings (e.g. an admission webhook's) as plain "Warning: ..." lines on stderr.
	cfg.WarningHandler = rest.NewWarningWriter(os.Stderr, rest.WarningWriterOptions{Deduplicate: true})
	cs, err := lhclientset.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	lh := cs.LonghornV1beta2()
	return &tool{namespace: namespace, cs: cs, kinds: map[string]kindOps{
		"BackupTarget":       opsFor[longhorn.BackupTarget]("backuptargets", lh.BackupTargets(namespace)),
		"BackupVolume":       opsFor[longhorn.BackupVolume]("backupvolumes", lh.BackupVolumes(namespace)),
		"Backup":             opsFor[longhorn.Backup]("backups", lh.Backups(namespace)),
		"SystemBackup":       opsFor[longhorn.SystemBackup]("systembackups", lh.SystemBackups(namespace)),
		"BackupBackingImage": opsFor[longhorn.BackupBackingImage]("backupbackingimages", lh.BackupBackingImages(namespace)),
		"Volume":             opsFor[longhorn.Volume]("volumes", lh.Volumes(namespace)),
		"Setting":            opsFor[longhorn.Setting]("settings", lh.Settings(namespace)),
	}}, nil
}

func (t *tool) ops(kind string) (kindOps, error) {
	k, ok := t.kinds[kind]
	if !ok {
		known := make([]string, 0, len(t.kinds))
		for name := range t.kinds {
			known = append(known, name)
		}
		sort.Strings(known)
		return kindOps{}, fmt.Errorf("unsupported kind %q (supported: %s)", kind, strings.Join(known, ", "))
	}
	return k, nil
}

// apiError renders an error from the API server with its code and reason, e.g.
// `admission webhook "x" denied the request: ... (HTTP 400 BadRequest)`.
func apiError(err error) string {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		s := st.Status()
		return fmt.Sprintf("%s (HTTP %d %s)", s.Message, s.Code, s.Reason)
	}
	return err.Error()
}

// setStatus copies src's Status field into dst (every engine type has one).
func setStatus(dst, src object) {
	reflect.ValueOf(dst).Elem().FieldByName("Status").Set(reflect.ValueOf(src).Elem().FieldByName("Status"))
}

// writeStatus writes want's status over the current object through the status subresource,
// re-reading the object and trying again on a conflict.
func (t *tool) writeStatus(ctx context.Context, k kindOps, cur, want object) (object, error) {
	for attempt := 1; ; attempt++ {
		setStatus(cur, want)
		out, err := k.updateStatus(ctx, cur)
		if err == nil {
			return out, nil
		}
		if !apierrors.IsConflict(err) || attempt == updateAttempts {
			return nil, fmt.Errorf("update status: %s", apiError(err))
		}
		if cur, err = k.get(ctx, want.GetName()); err != nil {
			return nil, fmt.Errorf("re-read after a conflict: %s", apiError(err))
		}
	}
}

// stored reads an object back as the API server returns it (through the clientset's REST client,
// not decoded into the Go type, which would show pruned fields as zero values), without
// metadata.managedFields.
func (t *tool) stored(ctx context.Context, kind, name string) (map[string]any, error) {
	k, err := t.ops(kind)
	if err != nil {
		return nil, err
	}
	raw, err := t.cs.LonghornV1beta2().RESTClient().Get().
		Namespace(t.namespace).Resource(k.plural).Name(name).DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("read back %s %q: %s", kind, name, apiError(err))
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, fmt.Errorf("read back %s %q: %w", kind, name, err)
	}
	if md, ok := obj["metadata"].(map[string]any); ok {
		delete(md, "managedFields")
	}
	return obj, nil
}

// apply creates each object of a JSON array, then writes its status if one was given.
func (t *tool) apply(ctx context.Context, in io.Reader) ([]map[string]any, error) {
	var items []json.RawMessage
	if err := json.NewDecoder(in).Decode(&items); err != nil {
		return nil, fmt.Errorf("stdin: expected a JSON array of objects: %w", err)
	}
	var result []map[string]any
	for i, raw := range items {
		var head struct {
			APIVersion string          `json:"apiVersion"`
			Kind       string          `json:"kind"`
			Status     json.RawMessage `json:"status"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		where := fmt.Sprintf("item %d (%s %q)", i, head.Kind, head.Metadata.Name)
		if head.APIVersion != "" && head.APIVersion != longhorn.SchemeGroupVersion.String() {
			return nil, fmt.Errorf("%s: apiVersion %q, only %s is supported", where, head.APIVersion, longhorn.SchemeGroupVersion)
		}
		if head.Metadata.Namespace != "" && head.Metadata.Namespace != t.namespace {
			return nil, fmt.Errorf("%s: metadata.namespace %q differs from --namespace %q", where, head.Metadata.Namespace, t.namespace)
		}
		k, err := t.ops(head.Kind)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		want, err := k.decode(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: does not match the engine's %s type: %w", where, head.Kind, err)
		}
		want.SetNamespace(t.namespace)
		got, err := k.create(ctx, want)
		if err != nil {
			return nil, fmt.Errorf("%s: create: %s", where, apiError(err))
		}
		if len(head.Status) > 0 && string(head.Status) != "null" {
			if got, err = t.writeStatus(ctx, k, got, want); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
		}
		obj, err := t.stored(ctx, head.Kind, got.GetName())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		result = append(result, obj)
	}
	return result, nil
}

// syncInput describes what the backup store holds, as the engine would find it.
type syncInput struct {
	Volumes []struct {
		Name    string   `json:"name"`
		Backups []string `json:"backups"`
		// BackupBlockSize is the block size the remote backups record ("-1", "2097152",
		// "16777216"); default "2097152", the engine's default block size.
		BackupBlockSize string `json:"backupBlockSize,omitempty"`
	} `json:"volumes"`
}

// backupVolumeName is the engine's name for the BackupVolume of a volume on a target:
// types/types.go:GetBackupVolumeNameFromVolumeName (volume name, "-", the first
// util.RandomIDLength (8) hex digits of sha256(TrimSpace("<volume>-<target>"))).
func backupVolumeName(volume, target string) string {
	sum := sha256.Sum256([]byte(strings.TrimSpace(volume + "-" + target)))
	return volume + "-" + hex.EncodeToString(sum[:])[:8]
}

// backupURL is the URL the engine records for a backup in the store:
// github.com/longhorn/backupstore backupstore.go:EncodeBackupURL (the target URL with the query
// parameters volume=<volume> and backup=<backup> added), as filled in by inspect.go.
func backupURL(targetURL, volume, backup string) string {
	u, err := url.Parse(targetURL)
	if err != nil {
		return ""
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		q = url.Values{}
	}
	q.Add("volume", volume)
	if backup != "" {
		q.Add("backup", backup)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// createOrGet creates obj; when it already exists it reads the existing one, as the engine's sync
// ignores AlreadyExists.
func createOrGet[P object](ctx context.Context, c typedClient[P], obj P) (P, error) {
	got, err := c.Create(ctx, obj, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return c.Get(ctx, obj.GetName(), metav1.GetOptions{})
	}
	return got, err
}

// updateStatusRetry applies change to the object's status and writes it, re-reading on conflict.
func updateStatusRetry[P object](ctx context.Context, c typedClient[P], obj P, change func(P)) (P, error) {
	for attempt := 1; ; attempt++ {
		change(obj)
		out, err := c.UpdateStatus(ctx, obj, metav1.UpdateOptions{})
		if err == nil || !apierrors.IsConflict(err) || attempt == updateAttempts {
			return out, err
		}
		if obj, err = c.Get(ctx, obj.GetName(), metav1.GetOptions{}); err != nil {
			return obj, err
		}
	}
}

// sync creates the BackupVolumes and Backups the engine v1.10.0 creates when its target sync finds
// the given volumes and backups in the backup store, then writes the status the engine writes once
// it has read them back. What is filled in, and where the engine does it:
//
// BackupVolume, created by controller/backup_target_controller.go:pullBackupVolumeFromBackupTarget:
//   - name: types/types.go:GetBackupVolumeNameFromVolumeName (see backupVolumeName)
//   - labels backup-target=<target>, backup-volume=<volume>
//   - ownerReferences: datastore/longhorn.go:GetOwnerReferencesForBackupTarget (apiVersion, kind,
//     uid, name of the BackupTarget; no controller, no blockOwnerDeletion)
//   - spec.backupTargetName, spec.volumeName
//   - finalizers [longhorn.io]: added at creation by the engine's mutating webhook,
//     webhook/resources/backupvolume/mutator.go:mutate (common.GetLonghornFinalizerPatchOpIfNeeded)
//
// Backup, created by controller/backup_volume_controller.go:reconcile (the loop over backupsToPull)
// through datastore/longhorn.go:CreateBackup:
//   - name: the backup's name in the store
//   - labels backup-target=<target> (reconcile) and backup-volume=<volume> (CreateBackup via
//     labelBackupVolume)
//   - ownerReferences: datastore/longhorn.go:GetOwnerReferencesForBackupVolume
//   - spec.labels: the remote backup's longhorn.io/volume-access-mode label (reconcile); when absent
//     the engine's mutator webhook/resources/backup/mutator.go:Create sets it to rwo. Here: rwo.
//   - spec.backupBlockSize: from the remote backup's parameters (reconcile); input field
//     backupBlockSize, default 2097152
//   - spec.snapshotName: empty (a pulled backup has no local snapshot; backup_controller.go:reconcile
//     relies on this to take the remote store as the source of truth)
//   - spec.backupMode: empty in reconcile; the mutator (mutator.go:Create) replaces an empty mode
//     with incremental
//   - finalizers [longhorn.io]: mutator.go:mutate
//
// Status, once the engine has read the store:
//   - Backup: controller/backup_controller.go:reconcile (the branch for a backup whose source of
//     truth is the store): state Completed, backupTargetName, url (see backupURL), volumeName,
//     lastSyncedAt. Fields read from the backup's config in the store (snapshot name, sizes, dates)
//     are left empty: there is no store here.
//   - BackupVolume: controller/backup_volume_controller.go:reconcile: lastBackupName (the store's
//     last backup; here the last one listed), lastSyncedAt. The other fields come from the store's
//     volume config and are left empty.
//
// The BackupTarget is only read (its uid and URL); its own status is not changed. Objects that
// already exist are reused, as the engine ignores AlreadyExists.
func (t *tool) sync(ctx context.Context, targetName string, in io.Reader) ([]map[string]any, error) {
	data, err := io.ReadAll(in)
	if err != nil {
		return nil, err
	}
	var input syncInput
	if err := strictDecode(data, &input); err != nil {
		return nil, fmt.Errorf(`stdin: expected {"volumes": [{"name": ..., "backups": [...]}]}: %w`, err)
	}
	lh := t.cs.LonghornV1beta2()
	target, err := lh.BackupTargets(t.namespace).Get(ctx, targetName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("BackupTarget %q: %s", targetName, apiError(err))
	}
	targetOwner := []metav1.OwnerReference{{
		APIVersion: longhorn.SchemeGroupVersion.String(), Kind: "BackupTarget", UID: target.UID, Name: target.Name,
	}}
	bvs, backups := lh.BackupVolumes(t.namespace), lh.Backups(t.namespace)
	var result []map[string]any
	for _, vol := range input.Volumes {
		if vol.Name == "" {
			return nil, errors.New("stdin: a volume has no name")
		}
		blockSize := int64(2097152)
		if vol.BackupBlockSize != "" {
			if blockSize, err = strconv.ParseInt(vol.BackupBlockSize, 10, 64); err != nil {
				return nil, fmt.Errorf("volume %q: backupBlockSize %q is not an integer", vol.Name, vol.BackupBlockSize)
			}
		}
		bv, err := createOrGet(ctx, bvs, &longhorn.BackupVolume{
			ObjectMeta: metav1.ObjectMeta{
				Name:            backupVolumeName(vol.Name, target.Name),
				Labels:          map[string]string{labelTarget: target.Name, labelVolume: vol.Name},
				OwnerReferences: targetOwner,
				Finalizers:      []string{finalizer},
			},
			Spec: longhorn.BackupVolumeSpec{BackupTargetName: target.Name, VolumeName: vol.Name},
		})
		if err != nil {
			return nil, fmt.Errorf("BackupVolume for volume %q: create: %s", vol.Name, apiError(err))
		}
		var created []map[string]any
		for _, name := range vol.Backups {
			b, err := createOrGet(ctx, backups, &longhorn.Backup{
				ObjectMeta: metav1.ObjectMeta{
					Name:   name,
					Labels: map[string]string{labelTarget: target.Name, labelVolume: vol.Name},
					OwnerReferences: []metav1.OwnerReference{{
						APIVersion: longhorn.SchemeGroupVersion.String(), Kind: "BackupVolume", UID: bv.UID, Name: bv.Name,
					}},
					Finalizers: []string{finalizer},
				},
				Spec: longhorn.BackupSpec{
					Labels:          map[string]string{labelAccessMode: string(longhorn.AccessModeReadWriteOnce)},
					BackupMode:      longhorn.BackupModeIncremental,
					BackupBlockSize: blockSize,
				},
			})
			if err != nil {
				return nil, fmt.Errorf("Backup %q of volume %q: create: %s", name, vol.Name, apiError(err))
			}
			now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
			b, err = updateStatusRetry(ctx, backups, b, func(b *longhorn.Backup) {
				b.Status.State = longhorn.BackupStateCompleted
				b.Status.BackupTargetName = target.Name
				b.Status.URL = backupURL(target.Spec.BackupTargetURL, vol.Name, name)
				b.Status.VolumeName = vol.Name
				b.Status.LastSyncedAt = now
			})
			if err != nil {
				return nil, fmt.Errorf("Backup %q of volume %q: update status: %s", name, vol.Name, apiError(err))
			}
			obj, err := t.stored(ctx, "Backup", b.Name)
			if err != nil {
				return nil, err
			}
			created = append(created, obj)
		}
		now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
		bv, err = updateStatusRetry(ctx, bvs, bv, func(bv *longhorn.BackupVolume) {
			if n := len(vol.Backups); n > 0 {
				bv.Status.LastBackupName = vol.Backups[n-1]
			}
			bv.Status.LastSyncedAt = now
		})
		if err != nil {
			return nil, fmt.Errorf("BackupVolume %q: update status: %s", backupVolumeName(vol.Name, target.Name), apiError(err))
		}
		obj, err := t.stored(ctx, "BackupVolume", bv.Name)
		if err != nil {
			return nil, err
		}
		result = append(result, obj)
		result = append(result, created...)
	}
	return result, nil
}

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "engine-objects: %v\n", err)
		os.Exit(1)
	}
}

const usage = `usage: engine-objects [--kubeconfig FILE] [--namespace NS] COMMAND
  apply                 create the objects of a JSON array on stdin (then their status)
  sync --target NAME    create BackupVolumes and Backups as the engine's target sync does;
                        stdin: {"volumes": [{"name": "vol-1", "backups": ["backup-1", ...]}]}
  get KIND NAME         print one object`

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	kubeconfig, namespace, target := os.Getenv("KUBECONFIG"), defaultNamespace, ""
	common := func(fs *flag.FlagSet) {
		fs.StringVar(&kubeconfig, "kubeconfig", kubeconfig, "kubeconfig file (default $KUBECONFIG)")
		fs.StringVar(&namespace, "namespace", namespace, "namespace of the engine's objects")
		fs.SetOutput(io.Discard)
	}
	top := flag.NewFlagSet("engine-objects", flag.ContinueOnError)
	common(top)
	if err := top.Parse(args); err != nil {
		return fmt.Errorf("%v\n%s", err, usage)
	}
	if top.NArg() == 0 {
		return errors.New(usage)
	}
	cmd := top.Arg(0)
	sub := flag.NewFlagSet(cmd, flag.ContinueOnError)
	common(sub)
	if cmd == "sync" {
		sub.StringVar(&target, "target", "", "BackupTarget name")
	}
	if err := sub.Parse(top.Args()[1:]); err != nil {
		return fmt.Errorf("%s: %v\n%s", cmd, err, usage)
	}
	ctx := context.Background()
	var result any
	switch cmd {
	case "apply", "sync", "get":
		t, err := newTool(kubeconfig, namespace)
		if err != nil {
			return err
		}
		switch cmd {
		case "apply":
			if sub.NArg() != 0 {
				return fmt.Errorf("apply takes no arguments (objects come on stdin)\n%s", usage)
			}
			objs, err := t.apply(ctx, stdin)
			if err != nil {
				return err
			}
			result = nonNil(objs)
		case "sync":
			if target == "" || sub.NArg() != 0 {
				return fmt.Errorf("sync needs --target NAME and no arguments\n%s", usage)
			}
			objs, err := t.sync(ctx, target, stdin)
			if err != nil {
				return err
			}
			result = nonNil(objs)
		case "get":
			if sub.NArg() != 2 {
				return fmt.Errorf("get needs KIND NAME\n%s", usage)
			}
			obj, err := t.stored(ctx, sub.Arg(0), sub.Arg(1))
			if err != nil {
				return err
			}
			result = obj
		}
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(result)
}

// nonNil makes an empty result print as [] rather than null.
func nonNil(objs []map[string]any) []map[string]any {
	if objs == nil {
		return []map[string]any{}
	}
	return objs
}
