//! ficus-proxy: the strangler-fig routing proxy — route matching, split decisions, forwarding,
//! admin API, rollout state and audit, proxy metrics.
