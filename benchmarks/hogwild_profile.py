"""Hogwild on the CUDA engine, by executor and learning rate (Fashion-MNIST, one epoch after a warm-up),
then a cProfile of the host during a K = 8 epoch: python benchmarks/hogwild_profile.py (on a GPU machine;
GENLAB_FASHION_MNIST names the idx files where Debian's package is not installed)."""
import cProfile, pstats, time, io
import genlab
d = genlab.datasets.load("fashion_mnist")
def make(K, ex, batch=32):
    net = genlab.Network.random_dag(4, 8, 16, 4, n_inputs=d.n_features, n_outputs=10, seed=0)
    return genlab.Trainer(net, backend="cuda", optimizer="sgd", lr=0.02, batch_size=batch, executor=ex,
                          parallel=genlab.Hogwild(K) if K else None)
for ex in ("level_batch", "dataflow_rows", "level"):
    for K in (0, 1, 2, 4, 8):
      for lr in (0.02, 0.005):
        t = make(K, ex); t.lr = lr
        try:
            t.fit(d.X_train[:4096], d.y_train[:4096], epochs=1, progress=False)  # warm: graphs captured
            s = time.perf_counter(); t.fit(d.X_train, d.y_train, epochs=1, progress=False); dt = time.perf_counter() - s
            print(f"{ex:14s} K={K} lr {lr}: {len(d.y_train)/dt:9.0f} samples/s, test {t.evaluate(d.X_test, d.y_test)['accuracy']:.3f}", flush=True)
        except Exception as e:
            print(f"{ex:14s} K={K} lr {lr}: {type(e).__name__}: {str(e)[:150]}", flush=True)
t = make(8, "level_batch")
t.fit(d.X_train[:4096], d.y_train[:4096], epochs=1, progress=False)
pr = cProfile.Profile(); pr.enable()
t.fit(d.X_train, d.y_train, epochs=1, progress=False)
pr.disable()
out = io.StringIO(); pstats.Stats(pr, stream=out).sort_stats("tottime").print_stats(25); print(out.getvalue()[:6000])
