package metrics

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authenticationclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// Lifetimes of a review's answer, as controller-runtime's
// filters.WithAuthenticationAndAuthorization sets them for the API server's
// delegating authenticator and authorizer: a token's identity 1 minute, an
// allowed scrape 5 minutes, a denied one 30 seconds.
const (
	tokenTTL = time.Minute
	allowTTL = 5 * time.Minute
	denyTTL  = 30 * time.Second
	// reviewTimeout bounds one TokenReview or SubjectAccessReview.
	reviewTimeout = 10 * time.Second
	// maxAnswers bounds each cache of answers (entries): a flood of
	// distinct tokens costs reviews, never memory.
	maxAnswers = 256
)

// Authorized is a metricsserver.FilterProvider that serves a request only
// when the API server says its bearer token is valid (a TokenReview; 401
// otherwise) and its user may get the request's path (a SubjectAccessReview
// of a non-resource URL, verb from the method; 403 otherwise): what
// controller-runtime's filters.WithAuthenticationAndAuthorization does, in
// the same reviews and with its cache lifetimes, without linking the
// Kubernetes API server's authentication and authorization packages (CEL
// and all: 20 MB of the operator's binary, all of it resident memory).
// Errors: the review clients cannot be built from config.
func Authorized(config *rest.Config, httpClient *http.Client) (metricsserver.Filter, error) {
	authn, err := authenticationclient.NewForConfigAndClient(config, httpClient)
	if err != nil {
		return nil, fmt.Errorf("token review client: %w", err)
	}
	authz, err := authorizationclient.NewForConfigAndClient(config, httpClient)
	if err != nil {
		return nil, fmt.Errorf("access review client: %w", err)
	}
	a := &reviewer{tokens: authn.TokenReviews(), access: authz.SubjectAccessReviews(),
		identities: answers[authenticationv1.UserInfo]{}, rejected: answers[bool]{}, decisions: answers[bool]{}}
	if _, err := rand.Read(a.salt[:]); err != nil {
		return nil, err
	}
	return func(log logr.Logger, next http.Handler) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			ctx, cancel := context.WithTimeout(req.Context(), reviewTimeout)
			defer cancel()
			scheme, token, _ := strings.Cut(strings.TrimSpace(req.Header.Get("Authorization")), " ")
			token = strings.TrimSpace(token)
			if !strings.EqualFold(scheme, "Bearer") || token == "" {
				http.Error(w, "Unauthorized", http.StatusUnauthorized)
				return
			}
			user, ok, err := a.authenticate(ctx, token)
			if err != nil {
				log.Error(err, "Token review failed")
				http.Error(w, "Authentication failed", http.StatusInternalServerError)
				return
			}
			if !ok {
				http.Error(w, "Unauthorized", http.StatusUnauthorized)
				return
			}
			allowed, err := a.authorize(ctx, user, strings.ToLower(req.Method), req.URL.Path)
			if err != nil {
				log.Error(err, "Access review failed", "user", user.Username)
				http.Error(w, "Authorization for user "+user.Username+" failed", http.StatusInternalServerError)
				return
			}
			if !allowed {
				http.Error(w, "Authorization denied for user "+user.Username, http.StatusForbidden)
				return
			}
			req.Header.Del("Authorization")
			next.ServeHTTP(w, req)
		}), nil
	}, nil
}

// reviewer asks the API server who a token is and what it may do, and
// remembers the answers for their lifetimes. Valid tokens and rejected ones
// are remembered apart, so a flood of junk tokens never pushes out
// Prometheus's identity.
type reviewer struct {
	tokens     authenticationclient.TokenReviewInterface
	access     authorizationclient.SubjectAccessReviewInterface
	salt       [32]byte // keys tokens by HMAC, never by the token
	mu         sync.Mutex
	identities answers[authenticationv1.UserInfo] // valid tokens' users
	rejected   answers[bool]                      // tokens the API server said are not valid
	decisions  answers[bool]                      // by the SubjectAccessReview's spec
}

// authenticate returns the token's user, or false when the API server says
// the token is not valid. An answer with an error (the API server could not
// tell) is not remembered. Errors: the TokenReview failed.
func (a *reviewer) authenticate(ctx context.Context, token string) (authenticationv1.UserInfo, bool, error) {
	mac := hmac.New(sha256.New, a.salt[:])
	mac.Write([]byte(token))
	key := string(mac.Sum(nil))
	a.mu.Lock()
	user, valid := a.identities.get(key)
	_, invalid := a.rejected.get(key)
	a.mu.Unlock()
	switch {
	case valid:
		return user, true, nil
	case invalid:
		return user, false, nil
	}
	review, err := a.tokens.Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}},
		metav1.CreateOptions{})
	if err != nil {
		return user, false, err
	}
	if review.Status.Authenticated && review.Status.User.Username != "" {
		a.mu.Lock()
		a.identities.put(key, review.Status.User, tokenTTL)
		a.mu.Unlock()
		return review.Status.User, true, nil
	}
	if review.Status.Error == "" {
		a.mu.Lock()
		a.rejected.put(key, true, tokenTTL)
		a.mu.Unlock()
	}
	return user, false, nil
}

// authorize tells whether user may verb the non-resource URL path.
// Errors: the SubjectAccessReview failed.
func (a *reviewer) authorize(ctx context.Context, user authenticationv1.UserInfo, verb, path string) (bool, error) {
	extra := make(map[string]authorizationv1.ExtraValue, len(user.Extra))
	for k, v := range user.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	spec := authorizationv1.SubjectAccessReviewSpec{User: user.Username, UID: user.UID, Groups: user.Groups, Extra: extra,
		NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: path, Verb: verb}}
	// The whole spec is the key, as the API server's webhook authorizer
	// keys its cache: an authorizer may decide on any of it.
	b, err := json.Marshal(spec)
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256(b)
	key := string(sum[:])
	a.mu.Lock()
	allowed, found := a.decisions.get(key)
	a.mu.Unlock()
	if found {
		return allowed, nil
	}
	review, err := a.access.Create(ctx, &authorizationv1.SubjectAccessReview{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	allowed = review.Status.Allowed && !review.Status.Denied
	ttl := denyTTL
	if allowed {
		ttl = allowTTL
	}
	if review.Status.EvaluationError == "" || allowed {
		a.mu.Lock()
		a.decisions.put(key, allowed, ttl)
		a.mu.Unlock()
	}
	return allowed, nil
}

// answers are remembered review answers by key, each until its expiry, at
// most maxAnswers of them. Not safe for concurrent use.
type answers[T any] map[string]answer[T]

type answer[T any] struct {
	value   T
	expires time.Time
}

// get returns the answer of key if it has not expired.
func (c answers[T]) get(key string) (T, bool) {
	e, ok := c[key]
	if !ok || time.Now().After(e.expires) {
		var zero T
		return zero, false
	}
	return e.value, true
}

// put remembers value for ttl. A full cache first drops what has expired
// and, if still full, the answer that expires first.
func (c answers[T]) put(key string, value T, ttl time.Duration) {
	now := time.Now()
	if _, ok := c[key]; !ok && len(c) >= maxAnswers {
		first := ""
		for k, e := range c {
			if now.After(e.expires) {
				delete(c, k)
			} else if first == "" || e.expires.Before(c[first].expires) {
				first = k
			}
		}
		if len(c) >= maxAnswers {
			delete(c, first)
		}
	}
	c[key] = answer[T]{value: value, expires: now.Add(ttl)}
}
