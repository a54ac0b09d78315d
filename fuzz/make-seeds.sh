#!/usr/bin/env bash
# Writes the seed corpora under fuzz/corpus/<target>/. The committed files are this script's
# output; run it again after changing a seed here. Each seed is a realistic input (what the API
# server, kubectl or a watch stream sends), so fuzzing starts from the deep paths.
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)/corpus
rm -rf "$root"
mkdir -p "$root"/{fuzz_admission,fuzz_kubeconfig,fuzz_watch_lines,fuzz_patch}

# ---------------------------------------------------------------- fuzz_admission: request bodies
adm=$root/fuzz_admission
review() {  # review FILE API_VERSION REQUEST_JSON
  printf '{"apiVersion":"%s","kind":"AdmissionReview","request":%s}\n' "$2" "$3" >"$adm/$1"
}
sb_res='"kind":{"group":"longhorn.io","version":"v1beta2","kind":"SystemBackup"},"resource":{"group":"longhorn.io","version":"v1beta2","resource":"systembackups"}'
backup_res='"kind":{"group":"longhorn.io","version":"v1beta2","kind":"Backup"},"resource":{"group":"longhorn.io","version":"v1beta2","resource":"backups"}'
bt_res='"kind":{"group":"longhorn.io","version":"v1beta2","kind":"BackupTarget"},"resource":{"group":"longhorn.io","version":"v1beta2","resource":"backuptargets"}'
user='"userInfo":{"username":"system:serviceaccount:longhorn-system:longhorn-service-account","groups":["system:serviceaccounts"]}'

review systembackup-create.json admission.k8s.io/v1 "{\"uid\":\"7f0b2c1e-0000-4000-8000-000000000001\",$sb_res,\"requestKind\":{\"group\":\"longhorn.io\",\"version\":\"v1beta2\",\"kind\":\"SystemBackup\"},\"name\":\"sb-nightly\",\"namespace\":\"longhorn-system\",\"operation\":\"CREATE\",$user,\"object\":{\"apiVersion\":\"longhorn.io/v1beta2\",\"kind\":\"SystemBackup\",\"metadata\":{\"name\":\"sb-nightly\",\"namespace\":\"longhorn-system\",\"labels\":{\"app.kubernetes.io/managed-by\":\"cron~job\"}},\"spec\":{}},\"oldObject\":null,\"dryRun\":false,\"options\":{\"apiVersion\":\"meta.k8s.io/v1\",\"kind\":\"CreateOptions\"}}"
review systembackup-create-v1beta1.json admission.k8s.io/v1beta1 "{\"uid\":\"7f0b2c1e-0000-4000-8000-000000000002\",$sb_res,\"name\":\"sb-2\",\"namespace\":\"longhorn-system\",\"operation\":\"CREATE\",\"object\":{\"apiVersion\":\"longhorn.io/v1beta2\",\"kind\":\"SystemBackup\",\"metadata\":{\"name\":\"sb-2\",\"namespace\":\"longhorn-system\",\"finalizers\":[\"example.com/keep\"]},\"spec\":{\"volumeBackupPolicy\":\"\"}},\"dryRun\":true}"
review systembackup-update-upgrade.json admission.k8s.io/v1 "{\"uid\":\"7f0b2c1e-0000-4000-8000-000000000003\",$sb_res,\"name\":\"sb-old\",\"namespace\":\"longhorn-system\",\"operation\":\"UPDATE\",\"object\":{\"apiVersion\":\"longhorn.io/v1beta2\",\"kind\":\"SystemBackup\",\"metadata\":{\"name\":\"sb-old\",\"namespace\":\"longhorn-system\",\"uid\":\"u-3\",\"resourceVersion\":\"812\",\"finalizers\":[\"longhorn.io\"],\"ownerReferences\":[{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"name\":\"cm\",\"uid\":\"u-cm\"}],\"annotations\":{\"a/b\":\"~1\"}},\"spec\":{\"volumeBackupPolicy\":\"always\"},\"status\":{\"state\":\"Ready\",\"version\":\"v1.8.0\"}},\"oldObject\":{\"apiVersion\":\"longhorn.io/v1beta2\",\"kind\":\"SystemBackup\",\"metadata\":{\"name\":\"sb-old\",\"namespace\":\"longhorn-system\",\"uid\":\"u-3\",\"resourceVersion\":\"811\",\"finalizers\":[\"longhorn.io\"]},\"spec\":{\"volumeBackupPolicy\":\"always\"}}}"
review systembackup-create-guarded.json admission.k8s.io/v1 "{\"uid\":\"7f0b2c1e-0000-4000-8000-000000000004\",$sb_res,\"name\":\"sb-4\",\"namespace\":\"empty-url\",\"operation\":\"CREATE\",\"object\":{\"apiVersion\":\"longhorn.io/v1beta2\",\"kind\":\"SystemBackup\",\"metadata\":{\"name\":\"sb-4\",\"namespace\":\"empty-url\"},\"spec\":{\"volumeBackupPolicy\":\"disabled\"}}}"
review systembackup-update-deleting.json admission.k8s.io/v1 "{\"uid\":\"7f0b2c1e-0000-4000-8000-000000000005\",$sb_res,\"name\":\"sb-5\",\"namespace\":\"deleting\",\"operation\":\"UPDATE\",\"object\":{\"apiVersion\":\"longhorn.io/v1beta2\",\"kind\":\"SystemBackup\",\"metadata\":{\"name\":\"sb-5\",\"namespace\":\"deleting\",\"deletionTimestamp\":\"2024-05-01T10:00:00Z\",\"finalizers\":[]},\"spec\":{}},\"oldObject\":{\"apiVersion\":\"longhorn.io/v1beta2\",\"kind\":\"SystemBackup\",\"metadata\":{\"name\":\"sb-5\",\"namespace\":\"deleting\",\"deletionTimestamp\":\"2024-05-01T10:00:00Z\",\"finalizers\":[\"longhorn.io\"]},\"spec\":{}}}"
review backup-delete-empty-target.json admission.k8s.io/v1 "{\"uid\":\"7f0b2c1e-0000-4000-8000-000000000006\",$backup_res,\"name\":\"backup-failed\",\"namespace\":\"longhorn-system\",\"operation\":\"DELETE\",$user,\"object\":null,\"oldObject\":{\"apiVersion\":\"longhorn.io/v1beta2\",\"kind\":\"Backup\",\"metadata\":{\"name\":\"backup-failed\",\"namespace\":\"longhorn-system\",\"finalizers\":[\"longhorn.io\"],\"labels\":{\"backup-volume\":\"vol-1\"}},\"spec\":{\"snapshotName\":\"snap-1\",\"labels\":{},\"backupMode\":\"incremental\"},\"status\":{\"state\":\"Error\",\"backupTargetName\":\"\",\"volumeName\":\"vol-1\",\"error\":\"backup target name and volume name cannot be empty\"}},\"options\":{\"apiVersion\":\"meta.k8s.io/v1\",\"kind\":\"DeleteOptions\",\"propagationPolicy\":\"Background\"}}"
review backup-delete-completed.json admission.k8s.io/v1 "{\"uid\":\"7f0b2c1e-0000-4000-8000-000000000007\",$backup_res,\"name\":\"backup-ok\",\"namespace\":\"longhorn-system\",\"operation\":\"DELETE\",\"oldObject\":{\"apiVersion\":\"longhorn.io/v1beta2\",\"kind\":\"Backup\",\"metadata\":{\"name\":\"backup-ok\",\"namespace\":\"longhorn-system\",\"labels\":{\"backup-volume\":\"vol-1\",\"backup-target\":\"default\"}},\"spec\":{\"snapshotName\":\"snap-2\",\"backupMode\":\"full\"},\"status\":{\"state\":\"Completed\",\"backupTargetName\":\"default\",\"volumeName\":\"vol-1\"}}}"
review backup-delete-custom-resource-only.json admission.k8s.io/v1 "{\"uid\":\"7f0b2c1e-0000-4000-8000-000000000008\",$backup_res,\"name\":\"backup-cr\",\"namespace\":\"guarded\",\"operation\":\"DELETE\",\"oldObject\":{\"metadata\":{\"name\":\"backup-cr\",\"labels\":{\"longhorn.io/delete-custom-resource-only\":\"true\",\"backup-volume\":\"vol-9\"}},\"status\":{\"backupTargetName\":\"default\"}}}"
review backup-create-bad-mode.json admission.k8s.io/v1 "{\"uid\":\"7f0b2c1e-0000-4000-8000-000000000009\",$backup_res,\"name\":\"backup-new\",\"namespace\":\"longhorn-system\",\"operation\":\"CREATE\",\"object\":{\"apiVersion\":\"longhorn.io/v1beta2\",\"kind\":\"Backup\",\"metadata\":{\"name\":\"backup-new\",\"namespace\":\"longhorn-system\",\"labels\":{\"backup-volume\":\"vol-1\"}},\"spec\":{\"snapshotName\":\"snap-3\",\"backupMode\":\"differential\"}}}"
review backup-create-no-label.json admission.k8s.io/v1 "{\"uid\":\"7f0b2c1e-0000-4000-8000-00000000000a\",$backup_res,\"name\":\"backup-nolabel\",\"namespace\":\"longhorn-system\",\"operation\":\"CREATE\",\"object\":{\"apiVersion\":\"longhorn.io/v1beta2\",\"kind\":\"Backup\",\"metadata\":{\"name\":\"backup-nolabel\",\"namespace\":\"longhorn-system\"},\"spec\":{\"snapshotName\":\"snap-4\",\"backupMode\":7}}}"
review backup-update-finalizer-removal.json admission.k8s.io/v1 "{\"uid\":\"7f0b2c1e-0000-4000-8000-00000000000b\",$backup_res,\"name\":\"backup-gone\",\"namespace\":\"longhorn-system\",\"operation\":\"UPDATE\",\"object\":{\"apiVersion\":\"longhorn.io/v1beta2\",\"kind\":\"Backup\",\"metadata\":{\"name\":\"backup-gone\",\"namespace\":\"longhorn-system\",\"deletionTimestamp\":\"2024-05-01T10:00:00Z\",\"resourceVersion\":\"92\",\"finalizers\":[]}},\"oldObject\":{\"apiVersion\":\"longhorn.io/v1beta2\",\"kind\":\"Backup\",\"metadata\":{\"name\":\"backup-gone\",\"namespace\":\"longhorn-system\",\"deletionTimestamp\":\"2024-05-01T10:00:00Z\",\"resourceVersion\":\"91\",\"finalizers\":[\"longhorn.io\"]}}}"
review backuptarget-delete-default-guarded.json admission.k8s.io/v1 "{\"uid\":\"7f0b2c1e-0000-4000-8000-00000000000c\",$bt_res,\"name\":\"default\",\"namespace\":\"guarded\",\"operation\":\"DELETE\",\"oldObject\":{\"apiVersion\":\"longhorn.io/v1beta2\",\"kind\":\"BackupTarget\",\"metadata\":{\"name\":\"default\",\"namespace\":\"guarded\",\"finalizers\":[\"longhorn.io\"]},\"spec\":{\"backupTargetURL\":\"s3://backups@us-east-1/\",\"credentialSecret\":\"minio-secret\",\"pollInterval\":\"5m0s\"},\"status\":{\"available\":true}}}"
review backuptarget-delete-default-annotated.json admission.k8s.io/v1 "{\"uid\":\"7f0b2c1e-0000-4000-8000-00000000000d\",$bt_res,\"name\":\"default\",\"namespace\":\"guarded\",\"operation\":\"DELETE\",\"oldObject\":{\"metadata\":{\"name\":\"default\",\"annotations\":{\"longhorn.io/delete-backup-target-from-longhorn\":\"\"}},\"spec\":{\"backupTargetURL\":\"\"}}}"
review backuptarget-delete-default-confirmed.json admission.k8s.io/v1 "{\"uid\":\"7f0b2c1e-0000-4000-8000-00000000000e\",$bt_res,\"name\":\"default\",\"namespace\":\"longhorn-system\",\"operation\":\"DELETE\"}"
review no-uid.json admission.k8s.io/v1 "{$sb_res,\"operation\":\"CREATE\",\"object\":{}}"
review wrong-shape.json admission.k8s.io/v1 "{\"uid\":\"u-shape\",$sb_res,\"operation\":\"CREATE\",\"object\":{\"metadata\":[]}}"
printf '{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview"}' >"$adm/wrong-version.json"

# ---------------------------------------------------------------- fuzz_kubeconfig: kubeconfigs
kc=$root/fuzz_kubeconfig
cat >"$kc/kind.yaml" <<'YAML'
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=
    server: https://127.0.0.1:40123
  name: kind-kind
contexts:
- context:
    cluster: kind-kind
    user: kind-kind
  name: kind-kind
current-context: kind-kind
kind: Config
preferences: {}
users:
- name: kind-kind
  user:
    client-certificate-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUMKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=
    client-key-data: LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1IYwotLS0tLUVORCBFQyBQUklWQVRFIEtFWS0tLS0tCg==
YAML
cat >"$kc/kubeadm-files.yaml" <<'YAML'
# kubeadm writes its sequences indented under their keys.
apiVersion: v1
kind: Config
clusters:
  - name: kubernetes
    cluster:
      server: "https://[fd00::1]:6443/k8s/clusters/c-1/"
      certificate-authority: ca.crt
contexts:
  - name: admin@kubernetes
    context: {cluster: kubernetes, user: admin, namespace: longhorn-system}
current-context: admin@kubernetes
users:
  - name: admin
    user:
      client-certificate: client.crt
      client-key: ./client.key
YAML
cat >"$kc/token-file.yaml" <<'YAML'
---
%YAML 1.2
apiVersion: v1
kind: Config
current-context: 'sa'   # quoted
clusters:
- name: in
  cluster:
    server: kubernetes.default.svc
    insecure-skip-tls-verify: true
contexts:
- name: sa
  context:
    cluster: in
    user: sa
users:
- name: sa
  user:
    tokenFile: token
    token: "static\ttoken \u00e9 \x41"
...
YAML
cat >"$kc/json.yaml" <<'YAML'
{"apiVersion":"v1","kind":"Config","current-context":"c","clusters":[{"name":"k","cluster":{"server":"https://10.0.0.1"}}],"contexts":[{"name":"c","context":{"cluster":"k","user":"u"}}],"users":[{"name":"u","user":{"token":"abc"}}]}
YAML
cat >"$kc/multi-context.yaml" <<'YAML'
apiVersion: v1
kind: Config
current-context: staging
clusters:
- cluster:
    server: https://prod.example.com:443
  name: prod
- cluster:
    server: >-
      not supported
  name: bad
- cluster:
    server: https://staging.example.com:8443
    proxy-url: http://proxy:3128
  name: staging
contexts:
- {name: prod, context: {cluster: prod, user: ops}}
- name: staging
  context:
    cluster: staging
    user: exec-user
users:
- name: ops
  user:
    token: 0x1F
- name: exec-user
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: aws
      args: [eks, get-token]
YAML
cat >"$kc/exec-anchors.yaml" <<'YAML'
# An exec plugin with every field, and a cluster shared through an anchor and an alias.
apiVersion: v1
kind: Config
current-context: eks
clusters:
- name: eks
  cluster: &eks
    server: https://ABCDEF.gr7.eu-west-1.eks.amazonaws.com
    certificate-authority: ca.crt
- name: eks-copy
  cluster: *eks
contexts:
- name: eks
  context: {cluster: eks-copy, user: eks, namespace: longhorn-system}
users:
- name: eks
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: ./bin/aws
      args: [--region, eu-west-1, eks, get-token, --cluster-name, prod]
      env:
      - {name: AWS_PROFILE, value: admin}
      interactiveMode: IfAvailable
      provideClusterInfo: true
      installHint: |
        Install the AWS CLI:
        https://docs.aws.amazon.com/cli/
YAML
# Found by fuzz_kubeconfig: a kind that is not UTF-8 made the error message throw.
printf 'apiVersion: v1\nkind: Confi\x94\n' >"$kc/invalid-utf8-kind.yaml"
cat >"$kc/scalars.yaml" <<'YAML'
# Plain, folded and quoted scalars of every kind YAML resolves.
a: ~
b: null
c: [1, 2.5, "x"]
d: 0o17
e: -.inf
f: 'it''s'
g: "line one
  line two \
  joined"
h: plain text
  continued
i:
- - nested
  - seq
-
  key: value
j: .NaN
YAML

# ---------------------------------------------------------------- fuzz_watch_lines: header + body
wl=$root/fuzz_watch_lines
# header: status selector, max-event selector, stop-after, flags, 4 bytes of chunk seed
header() { printf "\\x$(printf %02x "$1")\\x$(printf %02x "$2")\\x$(printf %02x "$3")\\x$(printf %02x "$4")\\x11\\x22\\x33\\x44"; }
obj() {  # obj NAME RV
  printf '{"apiVersion":"longhorn.io/v1beta2","kind":"Backup","metadata":{"name":"%s","namespace":"longhorn-system","resourceVersion":"%s","labels":{"backup-volume":"vol-1"}},"status":{"state":"Completed","backupTargetName":"default"}}' "$1" "$2"
}
{
  header 0 0 0 0
  printf '{"type":"ADDED","object":%s}\n' "$(obj backup-a 100)"
  printf '{"type":"MODIFIED","object":%s}\n' "$(obj backup-a 101)"
  printf '{"type":"BOOKMARK","object":{"kind":"Backup","apiVersion":"longhorn.io/v1beta2","metadata":{"resourceVersion":"120","annotations":{"k8s.io/initial-events-end":"true"}}}}\n'
  printf '{"type":"DELETED","object":%s}\n' "$(obj backup-a 121)"
} >"$wl/added-modified-bookmark-deleted"
{
  header 0 0 0 0
  printf '{"type":"ADDED","object":%s}\n' "$(obj backup-b 5)"
  printf '{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 5 (120)","reason":"Expired","code":410}}\n'
} >"$wl/error-410-gone"
{
  header 0 0 0 0
  printf '{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"etcdserver: request timed out","code":500}}\n'
} >"$wl/error-500"
{
  header 212 0 0 0  # HTTP 410
  printf '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version","reason":"Gone","code":410}'
} >"$wl/http-410"
{
  header 0 0 0 1  # the connection breaks after the body
  printf '{"type":"ADDED","object":%s}\r\n\r\n  \t\n' "$(obj backup-c 7)"
  printf '{"type":"MODIFIED","object":%s}' "$(obj backup-c 8)"
} >"$wl/crlf-blank-lines-unterminated-last"
{
  header 0 0 0 0
  printf '{"type":"ADDED","object":%s}\n' "$(obj backup-d 9)"
  printf '{"type":"ADDED","object":%s' "$(obj backup-e 10)"
  printf '\n{"type":"ADDED"}\n'
} >"$wl/malformed-line"
{
  header 140 0 0 0  # events over 208 bytes end the watch
  printf '{"type":"ADDED","object":{"metadata":{"name":"small"}}}\n'
  printf '{"type":"ADDED","object":%s}\n' "$(obj backup-large-enough-to-exceed-the-limit 11)"
} >"$wl/event-too-large"
{
  header 0 0 1 2  # the caller stops after one event
  printf '{"type":"ADDED","object":%s}\n' "$(obj backup-f 12)"
  printf '{"type":"ADDED","object":%s}\n' "$(obj backup-g 13)"
} >"$wl/caller-stops"

# ---------------------------------------------------------------- fuzz_patch: mode, original, NUL, rest
pt=$root/fuzz_patch
pair() { printf 'P%s\0%s' "$2" "$3" >"$pt/$1"; }  # 'P' is even: the rest is the modified document
edit() { printf 'E%s\0' "$2" >"$pt/$1"; printf "$3" >>"$pt/$1"; }  # 'E' is odd: edit bytes
sb='{"apiVersion":"longhorn.io/v1beta2","kind":"SystemBackup","metadata":{"name":"sb","namespace":"longhorn-system"},"spec":{}}'
pair systembackup-mutated "$sb" '{"apiVersion":"longhorn.io/v1beta2","kind":"SystemBackup","metadata":{"name":"sb","namespace":"longhorn-system","finalizers":["longhorn.io"],"ownerReferences":[{"apiVersion":"longhorn.io/v1beta2","kind":"BackupTarget","name":"default","uid":"uid-default"}]},"spec":{"volumeBackupPolicy":"if-not-present"}}'
pair finalizer-appended '{"metadata":{"finalizers":["a.io/x","b.io/y"],"ownerReferences":[{"kind":"ConfigMap","name":"c"}]}}' '{"metadata":{"finalizers":["a.io/x","b.io/y","longhorn.io"],"ownerReferences":[{"kind":"ConfigMap","name":"c"},{"apiVersion":"longhorn.io/v1beta2","kind":"BackupTarget","name":"default","uid":"u"}]}}'
pair escaped-keys '{"metadata":{"labels":{"app":"x"}}}' '{"metadata":{"labels":{"app":"x","longhorn.io/delete-custom-resource-only":"true","a~b":"1","~1/~0":"2","":"empty"},"annotations":{"longhorn.io/delete-backup-target-from-longhorn":""}}}'
pair shrink-and-retype '{"a":[1,2,3,4],"b":{"c":1},"d":"x","e":[{"f":1},{"g":2}]}' '{"a":[1,5],"b":[{"c":1}],"e":[{"f":1,"h":3}],"z":null}'
pair replace-root '[1,{"a":2}]' '{"a":[1]}'
pair numbers '{"i":1,"u":18446744073709551615,"f":1.5,"n":-0.0}' '{"i":1.0,"u":-1,"f":1.5e300,"n":0}'
edit edits-on-systembackup "$sb" '\x00\x02ab\x01\x05\x00\x02\x03\x01\x00\x04\x02\x01\x07\x00\x03'
edit edits-append-only '{"metadata":{"finalizers":["x"],"labels":{}},"spec":{"list":[[],{}]}}' '\x01\x00\x02\x06\x00\x02\x01\x00\x00\x03\x02\x05\x01\x01\x00\x04\x02\x00'
edit edits-mutator-repairs '{"metadata":{"finalizers":"longhorn.io","ownerReferences":null},"spec":{"volumeBackupPolicy":7}}' '\x03\x00\x01\x04\x01\x00'
echo "seeds written under $root"
