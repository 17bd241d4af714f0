# The forkrl image for GPU clusters: Ray's official image plus this project, installed from its
# pyproject with the GPU extra (vLLM, which brings its CUDA torch). One install source: the same
# pyproject that `pip install -e ".[gpu]"` reads, so cluster nodes run what the tests ran.
#   docker build -t forkrl:0.1.0 .          (then push it where your cluster pulls from)
# cluster_configs/kuberay-rayjob.yaml runs this image; cluster_configs/ray-cluster.yaml starts from the
# same base image and pip-installs the mounted repo instead. tests/test_cluster_configs.py checks that
# the Ray version, the image names and the extra agree across this file, pyproject.toml and both YAMLs.
FROM rayproject/ray:2.60.0-py311-gpu

LABEL org.opencontainers.image.title="forkrl" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.description="Ray-based RLVR with entropy-controlled policy updates"

WORKDIR /home/ray/forkrl
# The project, editable: recipes/ stay next to the code, so `forkrl train recipes/...` works here.
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users orchestrator ./orchestrator
COPY --chown=ray:users actors ./actors
COPY --chown=ray:users learner ./learner
COPY --chown=ray:users rewards ./rewards
COPY --chown=ray:users common ./common
COPY --chown=ray:users recipes ./recipes
RUN pip install --no-cache-dir -e ".[gpu]" \
 && python -c "import ray, vllm, deepspeed, forkrl.orchestrator.cli; print('forkrl image ok: ray', ray.__version__)"
