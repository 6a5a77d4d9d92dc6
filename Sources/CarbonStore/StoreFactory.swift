#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The one place that turns the parts of a storage URI into backends: a provider of storage for
/// each scheme (`path`, `memory`, and `s3` once the AWS module registers it) and a provider of locks
/// for each `locking` value (`local`, `none`, and `dynamo` from the AWS module). The engine knows
/// nothing of AWS: `CarbonStoreAWS` registers its own providers (`AWSBackends.register(in:)`).
public struct BackendRegistry: Sendable {
    /// Makes the storage for a URI.
    public typealias StorageProvider = @Sendable (StorageURI, StoreOptions) async throws -> any ObjectStorage
    /// Makes the locks for a URI, given the storage it guards.
    public typealias LockProvider =
        @Sendable (StorageURI, any ObjectStorage, StoreOptions) async throws -> any LockService

    var storageProviders: [String: StorageProvider] = [:]
    var lockProviders: [String: LockProvider] = [:]

    /// A registry with nothing in it.
    public init() {}

    /// Registers (or replaces) the storage of a scheme.
    public mutating func register(storage scheme: String, _ provider: @escaping StorageProvider) {
        storageProviders[scheme] = provider
    }

    /// Registers (or replaces) the locks of a `locking` value.
    public mutating func register(locking name: String, _ provider: @escaping LockProvider) {
        lockProviders[name] = provider
    }

    /// `path:` and `memory:`, with `locking=local` (file locks on a volume, in-process locks in
    /// memory) and `locking=none`.
    public static var local: BackendRegistry {
        var registry = BackendRegistry()
        registry.register(storage: "path") { uri, options in
            guard case .path(let dir) = uri.backend else { preconditionFailure("registered for path:") }
            let offloadFileWork: Bool? =
                switch uri.pathIO {
                case .threads: true
                case .task: false
                case .auto, nil: nil
                }
            return try PathStorage(
                root: dir, io: options.fileIO,
                fileMode: uri.fileMode.map { mode_t($0) } ?? PathStorage.defaultFileMode,
                maximumFileSize: options.codec.limits.maxFileSize, offloadFileWork: offloadFileWork,
                framesInPlace: options.framesInPlace, readOnly: options.readOnly)
        }
        registry.register(storage: "memory") { _, _ in MemoryStorage() }
        registry.register(locking: "local") { uri, storage, _ in
            if let path = storage as? PathStorage { return FileLockService(storage: path) }
            if storage is MemoryStorage { return InProcessLockService() }
            throw UnsupportedError(
                "locking=local works with path: and memory: only; for '\(uri)' use locking=dynamo&table=TABLE or locking=none"
            )
        }
        registry.register(locking: "none") { _, _, _ in NoLockService() }
        return registry
    }

    /// The storage and locks for a URI.
    public func backends(for uri: StorageURI, options: StoreOptions) async throws -> (
        storage: any ObjectStorage, locks: any LockService
    ) {
        guard let makeStorage = storageProviders[uri.scheme] else {
            throw UnsupportedError(
                "storage URI '\(uri)' needs \(uri.scheme): support, which this program does not include; use path: or memory:, or a build with CarbonStoreAWS"
            )
        }
        guard let makeLocks = lockProviders[uri.lockingName] else {
            throw UnsupportedError(
                "storage URI '\(uri)' needs locking=\(uri.lockingName), which this program does not include; use locking=local or none, or a build with CarbonStoreAWS"
            )
        }
        let storage = try await makeStorage(uri, options)
        return (storage, try await makeLocks(uri, storage, options))
    }
}

/// Builds a `Store` from a storage URI through a `BackendRegistry`.
public struct StoreFactory: Sendable {
    public var registry: BackendRegistry
    public var options: StoreOptions

    public init(registry: BackendRegistry = .local, options: StoreOptions = .init()) {
        self.registry = registry
        self.options = options
    }

    public func makeStore(_ uri: StorageURI) async throws -> Store {
        var options = self.options
        if let wait = uri.waitMilliseconds { options.lockWait = .milliseconds(wait) }
        if let cache = uri.cacheMebibytes { options.cacheBytes = cache << 20 }
        if let compression = uri.compression { options.codec.options.compression = compression }
        let (storage, locks) = try await registry.backends(for: uri, options: options)
        return Store(storage: storage, locks: locks, keys: UserKeys(prefix: uri.prefix), options: options)
    }

    public func makeStore(_ text: String) async throws -> Store {
        try await makeStore(StorageURI(text))
    }
}
