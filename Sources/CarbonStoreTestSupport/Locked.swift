import Foundation

/// A value behind a pthread mutex (NSLock), for tests and fakes. Not `Synchronization.Mutex`: the
/// thread sanitizer cannot see its futex on Linux and would report false races.
public final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    public init(_ value: Value) { self.value = value }

    public func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
