import Foundation

/// A value behind a pthread mutex (NSLock), for the few places where plain shared state is simpler
/// than an actor. Not `Synchronization.Mutex`: the thread sanitizer cannot see its futex on Linux.
/// (AWSClient does not depend on the engine, which has the same small type.)
final class LockedValue<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
