import Synchronization

/// A value behind a mutex, for the few places where plain shared state is simpler than an actor.
final class LockedValue<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout sending Value) throws -> R) rethrows -> R {
        try mutex.withLock { try body(&$0) }
    }
}
