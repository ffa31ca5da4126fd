package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
)

// ReleaseReconciler runs one AppRelease: it adds the drain finalizer first
// and keeps the release's Deployment as the spec asks, putting back what
// others change. The app controller drains deleted and superseded releases,
// deletes their Deployments once drained, and writes every status.
type ReleaseReconciler struct {
	client.Client
	// revertedMu guards revertedGen: the generation of each Deployment
	// (by uid) whose edit by someone else was already put back once.
	revertedMu  sync.Mutex
	revertedGen map[types.UID]int64
	// APIReader reads past the cache, which holds only Switchyard's
	// Deployments: it finds a Deployment of the release's name that someone
	// else created.
	APIReader client.Reader
	Recorder  events.EventRecorder
	// refusals passes what the API server refused to the app controller.
	refusals *refusals
	// deployments are the records of Switchyard's Deployments.
	deployments *deploymentCache
}

// +kubebuilder:rbac:groups=delivery.switchyard.dev,resources=appreleases,verbs=get;list;watch;patch;delete
// +kubebuilder:rbac:groups=delivery.switchyard.dev,resources=appreleases/status,verbs=patch
// +kubebuilder:rbac:groups=delivery.switchyard.dev,resources=appreleases/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Reconcile brings one release's Deployment to its spec.
func (r *ReleaseReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	release := &v1alpha1.AppRelease{}
	if err := r.Get(ctx, req.NamespacedName, release); err != nil {
		if apierrors.IsNotFound(err) {
			r.refusals.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues("app", release.Spec.App))
	if !release.DeletionTimestamp.IsZero() {
		// The app controller drains the release's routes and then drops the
		// finalizer; the Deployment goes with the release, by owner reference.
		return ctrl.Result{}, nil
	}
	// A patch of the finalizers alone: the spec belongs to whoever applied it
	// (a pipeline, a GitOps tool), and an update would write it back as decoded.
	patch := client.MergeFromWithOptions(release.DeepCopy(), client.MergeFromWithOptimisticLock{})
	if controllerutil.AddFinalizer(release, Finalizer) {
		if err := r.Patch(ctx, release, patch); apierrors.IsConflict(err) {
			// The release changed since the cache saw it (most often the app
			// controller's first status): the newer version's update event
			// brings this reconcile back at once.
			ctrl.LoggerFrom(ctx).V(1).Info("AppRelease changed while adding the finalizer; waiting for its update")
			return ctrl.Result{}, nil
		} else if err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer to AppRelease %s: %w", req, err)
		}
	}
	if release.Status.Phase == v1alpha1.PhaseSuperseded {
		// Its routes and subset are gone: the app controller deletes its
		// Deployment once drained.
		return ctrl.Result{}, nil
	}
	if release.Spec.TemplateError != "" {
		// Stored before the CRD had a schema for it: only a new spec helps.
		r.refusals.set(release, &refusal{Generation: release.Generation, Reason: v1alpha1.ReasonInvalidTemplate,
			Message: "spec.template cannot be decoded: " + release.Spec.TemplateError + "; apply a corrected release"})
		return ctrl.Result{}, nil
	}
	res, err := r.applyDeployment(ctx, release)
	if err != nil && persistent(err) {
		// An invalid template, a quota, an admission policy, RBAC: said at
		// once, and retried with backoff, as a change of the release or of
		// what refused it may cure it.
		r.refusals.set(release, &refusal{Generation: release.Generation, Reason: v1alpha1.ReasonDeploymentRefused,
			Message: "the API server refused its Deployment: " + err.Error()})
	}
	return res, err
}

// applyDeployment writes the release's Deployment when it differs from the
// spec, or when someone else changed it since Switchyard's last write.
func (r *ReleaseReconciler) applyDeployment(ctx context.Context, release *v1alpha1.AppRelease) (ctrl.Result, error) {
	key := client.ObjectKeyFromObject(release)
	current := r.deployments.get(key)
	if current == nil {
		// The cache holds only Switchyard's Deployments: look for anyone else's.
		other := &appsv1.Deployment{}
		if err := r.APIReader.Get(ctx, key, other); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("get Deployment %s: %w", key, err)
		} else if err == nil {
			current = recordOf(other)
		}
	}
	var editor string
	switch {
	case current == nil:
	case !runs(current, release):
		if current.Owner != "" && current.Release == release.Name {
			// A Deployment of an earlier release of the same name, on its
			// way out (its routes drain first): wait for it rather than fight.
			ctrl.LoggerFrom(ctx).Info("Waiting for a Deployment of an earlier release of the same name to go", "deployment", klog.KObj(current))
			r.refusals.set(release, nil)
			return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
		}
		r.refusals.set(release, &refusal{Generation: release.Generation, Reason: v1alpha1.ReasonDeploymentConflict,
			Message: fmt.Sprintf("Deployment %s already exists and was not created by Switchyard for this release: it is left untouched; delete or rename it, or rename the release", klog.KObj(current))})
		// Its deletion sends no event (the cache holds only Switchyard's
		// Deployments): look again.
		return ctrl.Result{RequeueAfter: conflictRecheck}, nil
	case !current.DeletionTimestamp.IsZero():
		// It is being deleted: its pods go once their routes have drained,
		// and a new one is made after.
		return ctrl.Result{}, nil
	default:
		editor = current.EditedBy
		if editor != "" && r.alreadyReverted(current) && current.SpecHash == desiredHash(release) {
			// Put back once already, and still changed: what is left are
			// fields Switchyard does not set (an added environment variable,
			// spec.paused), which an apply cannot remove. Say so.
			r.refusals.set(release, driftRefusal(release, current.Name, editor))
			return ctrl.Result{}, nil
		}
		if current.SpecHash == desiredHash(release) && editor == "" {
			r.refusals.set(release, nil)
			return ctrl.Result{}, nil
		}
	}
	// The cache holds no templates: render from the release as stored.
	full := &v1alpha1.AppRelease{}
	if err := r.APIReader.Get(ctx, key, full); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if full.Spec.TemplateError != "" {
		return ctrl.Result{}, nil // refused by Reconcile, on its next pass with this generation
	}
	desired := MakeDeployment(full)
	u, err := toUnstructured(desired)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(releaseFieldManager), client.ForceOwnership); err != nil {
		return ctrl.Result{}, fmt.Errorf("apply Deployment %s: %w", klog.KObj(desired), err)
	}
	if editor != "" && current.SpecHash == desired.Annotations[annotationSpecHash] {
		r.noteReverted(current)
		if gen, _, _ := unstructured.NestedInt64(u.Object, "metadata", "generation"); gen != current.Generation {
			r.refusals.set(release, nil)
			r.Recorder.Eventf(release, current.object(), corev1.EventTypeWarning, "DeploymentReverted", "Apply",
				"Deployment %s was changed by %s; put back as the release asks (change the AppRelease instead)", current.Name, editor)
			ctrl.LoggerFrom(ctx).Info("Put back a Deployment changed by someone else", "deployment", klog.KObj(desired), "editedBy", editor)
			return ctrl.Result{}, nil
		}
		// The apply changed nothing: what was changed are fields Switchyard
		// does not set (an added environment variable, spec.paused).
		r.refusals.set(release, driftRefusal(release, current.Name, editor))
		return ctrl.Result{}, nil
	}
	r.refusals.set(release, nil)
	ctrl.LoggerFrom(ctx).Info("Applied Deployment", "deployment", klog.KObj(desired), "image", full.Spec.Image)
	return ctrl.Result{}, nil
}

// driftRefusal: the release's Deployment was changed by editor in fields
// Switchyard does not set, which an apply cannot take back.
func driftRefusal(release *v1alpha1.AppRelease, deployment, editor string) *refusal {
	return &refusal{Generation: release.Generation, Reason: v1alpha1.ReasonDeploymentDrift,
		Message: fmt.Sprintf("Deployment %s was changed by %s in fields Switchyard does not set, so it does not run the release as asked; "+
			"undo that change, or delete the Deployment (its pods go once their routes have drained, and it is made anew)", deployment, editor)}
}

// conflictRecheck is how often a release blocked by a Deployment that is not
// Switchyard's looks again.
const conflictRecheck = 15 * time.Second

// alreadyReverted tells whether this edit of d (its generation) was put back already.
func (r *ReleaseReconciler) alreadyReverted(d *deploymentRecord) bool {
	r.revertedMu.Lock()
	defer r.revertedMu.Unlock()
	gen, ok := r.revertedGen[d.UID]
	return ok && gen == d.Generation
}

// noteReverted remembers that the edit of d at its generation was put back.
func (r *ReleaseReconciler) noteReverted(d *deploymentRecord) {
	r.revertedMu.Lock()
	defer r.revertedMu.Unlock()
	if r.revertedGen == nil {
		r.revertedGen = map[types.UID]int64{}
	}
	r.revertedGen[d.UID] = d.Generation
}

// SetupWithManager registers the release controller.
func (r *ReleaseReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		Named("apprelease").
		For(&v1alpha1.AppRelease{}, builder.WithPredicates(releaseSpecChanged)).
		// Releases are independent: a burst of pipelines is taken in (the
		// finalizer, the Deployment) a few at a time, not one by one.
		WithOptions(controller.Options{MaxConcurrentReconciles: 4})
	// A Deployment maps to its release by label (it has no owner
	// reference): its spec changed (a hand edit to put back) or it is gone.
	releaseOf := func(d *deploymentRecord) (client.ObjectKey, bool) {
		return client.ObjectKey{Namespace: d.Namespace, Name: d.Release}, d.Release != ""
	}
	for _, src := range r.deployments.sources(releaseOf, predicate.GenerationChangedPredicate{}) {
		b = b.WatchesRawSource(src)
	}
	return b.Complete(r)
}

// releaseSpecChanged passes the release changes the release controller acts
// on: its spec (generation), its deletion, its finalizers and its becoming
// Superseded; not the statuses the app controller writes.
var releaseSpecChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld.(*v1alpha1.AppRelease), e.ObjectNew.(*v1alpha1.AppRelease)
		return o.Generation != n.Generation || !o.DeletionTimestamp.Equal(n.DeletionTimestamp) ||
			!slices.Equal(o.Finalizers, n.Finalizers) ||
			(o.Status.Phase == v1alpha1.PhaseSuperseded) != (n.Status.Phase == v1alpha1.PhaseSuperseded)
	},
}

// toUnstructured turns a typed object into the unstructured form server-side
// apply takes, without the zero-valued fields a typed struct always carries.
func toUnstructured(obj any) (*unstructured.Unstructured, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(b); err != nil {
		return nil, err
	}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	return u, nil
}
