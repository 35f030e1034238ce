/// A quick question to a store that may be down: used where a cached answer exists (a mount that
/// can start offline from its cached ref; `status` asking whether the store is back).
///
/// Remote stores answer under a short deadline, and a refused connection or a host name that does
/// not resolve ends the attempt on that mirror at once instead of being retried until the
/// deadline: nothing is listening, and a cached answer is waiting. A directory store has no
/// network to wait for and is read as usual.
protocol PolicyGettable {
    func get(_ key: String, policy: RetryPolicy) throws -> [UInt8]
}

extension HTTPStore: PolicyGettable {}
extension S3Store: PolicyGettable {}

extension ObjectStore {
    /// The object, asked for with at most `deadline` seconds in all and no retries against an
    /// address where nothing answers. Throws `StoreError.unavailable` when the store cannot be
    /// reached in that time.
    public func probe(_ key: String, deadline: Double) throws -> [UInt8] {
        guard let remote = self as? PolicyGettable else { return try get(key) }
        var policy = RetryPolicy(deadline: deadline)
        policy.failFastWhenUnreachable = true
        policy.initialBackoff = min(policy.initialBackoff, deadline / 10)
        return try remote.get(key, policy: policy)
    }
}
