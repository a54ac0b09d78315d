package main

// Minimal typed Go versions of the two longhorn.io/v1beta2 kinds the benchmark sends, written the
// way a kubebuilder project would have them (ObjectMeta, Spec, Status), with hand-written deep
// copies instead of controller-gen output. Only the fields that the rules read are modelled; the
// benchmark bodies carry no others, so decoding and re-encoding loses nothing.

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var groupVersion = schema.GroupVersion{Group: "longhorn.io", Version: "v1beta2"}

type SystemBackupSpec struct {
	VolumeBackupPolicy string `json:"volumeBackupPolicy,omitempty"`
}

type SystemBackupStatus struct {
	State        string `json:"state,omitempty"`
	OwnerID      string `json:"ownerID,omitempty"`
	Version      string `json:"version,omitempty"`
	ManagerImage string `json:"managerImage,omitempty"`
}

type SystemBackup struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              SystemBackupSpec   `json:"spec,omitempty"`
	Status            SystemBackupStatus `json:"status,omitempty"`
}

func (in *SystemBackup) DeepCopyObject() runtime.Object {
	out := *in
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return &out
}

type BackupSpec struct {
	SnapshotName string            `json:"snapshotName,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	BackupMode   string            `json:"backupMode,omitempty"`
}

type BackupStatus struct {
	State            string `json:"state,omitempty"`
	BackupTargetName string `json:"backupTargetName,omitempty"`
	VolumeName       string `json:"volumeName,omitempty"`
	Error            string `json:"error,omitempty"`
	URL              string `json:"url,omitempty"`
	SnapshotName     string `json:"snapshotName,omitempty"`
	Progress         int    `json:"progress,omitempty"`
}

type Backup struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              BackupSpec   `json:"spec,omitempty"`
	Status            BackupStatus `json:"status,omitempty"`
}

func (in *Backup) DeepCopyObject() runtime.Object {
	out := *in
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	if in.Spec.Labels != nil {
		out.Spec.Labels = make(map[string]string, len(in.Spec.Labels))
		for k, v := range in.Spec.Labels {
			out.Spec.Labels[k] = v
		}
	}
	return &out
}

type BackupTarget struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
}

func (in *BackupTarget) DeepCopyObject() runtime.Object {
	out := *in
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return &out
}

func addToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(groupVersion, &SystemBackup{}, &Backup{}, &BackupTarget{})
	metav1.AddToGroupVersion(s, groupVersion)
	return nil
}
