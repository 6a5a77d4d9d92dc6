/// Builds a `Store` from a storage URI. Backends that live in other modules (S3, DynamoDB) are
/// added by registering a provider, so this module knows nothing of AWS.
public struct StoreFactory: Sendable {
    /// Makes the storage and locks for URIs this module does not handle itself (s3:, dynamo).
    public typealias Provider =
        @Sendable (StorageURI, StoreOptions) async throws -> (
            any ObjectStorage, any LockService
        )?

    public var providers: [Provider]
    public var options: StoreOptions

    public init(providers: [Provider] = [], options: StoreOptions = .init()) {
        self.providers = providers
        self.options = options
    }

    public func makeStore(_ uri: StorageURI) async throws -> Store {
        var options = self.options
        if let wait = uri.waitMilliseconds { options.lockWait = .milliseconds(wait) }
        let keys = UserKeys(prefix: uri.prefix)
        switch (uri.backend, uri.locking) {
        case (.memory, .local):
            return Store(
                storage: MemoryStorage(), locks: InProcessLockService(), keys: keys, options: options)
        case (.memory, .none):
            return Store(storage: MemoryStorage(), locks: NoLockService(), keys: keys, options: options)
        case (.path(let dir), .local):
            let storage = try PathStorage(root: dir, io: options.fileIO)
            return Store(
                storage: storage, locks: try FileLockService(root: storage.root), keys: keys, options: options
            )
        case (.path(let dir), .none):
            return Store(
                storage: try PathStorage(root: dir, io: options.fileIO), locks: NoLockService(), keys: keys,
                options: options)
        default:
            for provider in providers {
                if let (storage, locks) = try await provider(uri, options) {
                    return Store(storage: storage, locks: locks, keys: keys, options: options)
                }
            }
            throw UnsupportedError(
                "storage URI '\(uri)' needs S3 or DynamoDB support, which this build does not include yet; use path: or memory: with locking=local or none"
            )
        }
    }

    public func makeStore(_ text: String) async throws -> Store {
        try await makeStore(StorageURI(text))
    }
}
