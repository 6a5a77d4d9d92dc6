import CarbonStore

/// A storage that hands every call to another one: the base of the tests' wrappers, which
/// override only the calls they count or change. It forwards every requirement of
/// `ObjectStorage`, `confirmDurable` included, so that a wrapper over `PathStorage` keeps its
/// appends and their durability check. `getBytes` is left to the protocol's default, which calls
/// `get`: a wrapper that counts whole reads in `get` counts it too.
open class ForwardingStorage: ObjectStorage, @unchecked Sendable {
    public let inner: any ObjectStorage

    public init(_ inner: any ObjectStorage) { self.inner = inner }

    open func get(_ key: String) async throws -> StoredObject? { try await inner.get(key) }

    open func put(_ key: String, bytes: [UInt8], condition: WriteCondition) async throws -> ObjectVersion {
        try await inner.put(key, bytes: bytes, condition: condition)
    }

    open func delete(_ key: String, condition: WriteCondition) async throws -> Bool {
        try await inner.delete(key, condition: condition)
    }

    open func list(prefix: String, startAfter: String?, limit: Int) async throws -> ObjectListing {
        try await inner.list(prefix: prefix, startAfter: startAfter, limit: limit)
    }

    open func location(of key: String) -> String { inner.location(of: key) }

    open func getIfChanged(_ key: String, cached: ObjectVersion) async throws -> ConditionalRead {
        try await inner.getIfChanged(key, cached: cached)
    }

    open var appendsInPlace: Bool { inner.appendsInPlace }

    /// A wrapper whose overrides wait for something after a write must say false.
    open var cancelsOnlyBeforeWriting: Bool { inner.cancelsOnlyBeforeWriting }

    open func checkWritable() async throws { try await inner.checkWritable() }

    open func withOperation<T>(on key: String, _ body: () async throws -> T) async throws -> T {
        try await inner.withOperation(on: key, body)
    }

    open func append(_ key: String, bytes: [UInt8], expected: ObjectVersion?) async throws -> ObjectVersion {
        try await inner.append(key, bytes: bytes, expected: expected)
    }

    open func append(
        _ key: String, bytes: [UInt8], expected: ObjectVersion?, whenWritten: () -> Void
    ) async throws -> ObjectVersion {
        try await inner.append(key, bytes: bytes, expected: expected, whenWritten: whenWritten)
    }

    open func confirmDurable(_ key: String, version: ObjectVersion) async throws -> Bool {
        try await inner.confirmDurable(key, version: version)
    }
}
