#!/bin/sh
# For `docker compose up` by hand: write stack/deploy/.env (what compose.yaml interpolates)
# and stack/deploy/shop.env (the user service's settings) with fresh random secrets, mode
# 0600, git-ignored. Existing files are kept (pass --force to replace them). The scalelab
# driver writes its own pair under its state directory instead.
set -eu
cd "$(dirname "$0")"
if [ -e .env ] && [ "${1:-}" != --force ]; then
    echo "make-env: stack/deploy/.env exists (kept); --force writes new secrets"
    exit 0
fi
secret() { python3 -c 'import secrets, sys; print(secrets.token_urlsafe(int(sys.argv[1])))' "$1"; }
umask 077
redis_password=$(secret 18)
rabbitmq_password=$(secret 18)
cat > .env <<ENV
POSTGRES_PASSWORD=$(secret 18)
SHOP_DB_PASSWORD=$(secret 18)
REDIS_PASSWORD=$redis_password
RABBITMQ_PASSWORD=$rabbitmq_password
NGINX_PORT=8080
ENV
cat > shop.env <<ENV
SHOP_JWT_SECRET=$(secret 32)
SHOP_REDIS_URL=redis://:$redis_password@redis:6379/0
SHOP_RABBITMQ_URL=amqp://shop:$rabbitmq_password@rabbitmq:5672//
SHOP_AUTH_REQUIRED=true
SHOP_PLANNED_REPLICAS=3
SHOP_CACHE_TTL_S=60
SHOP_RATE_LIMIT=0
ENV
echo "make-env: wrote stack/deploy/.env and stack/deploy/shop.env (0600, git-ignored)"
