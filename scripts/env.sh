# Sourced by the scripts: how the local stack is reached. Override any of these
# in your environment (e.g. to point at a LocalStack you run in Docker).
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
# LocalStack validates presigned URLs against the secret "test".
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_DEFAULT_REGION="$AWS_REGION"
export PATH="$HOME/.cargo/bin:$PATH"
