
__kernel void matmul(__global const DATA_TYPE *a,   /* [m, k] */
                     __global const DATA_TYPE *b,   /* [k, n] */
                     __global DATA_TYPE *c,         /* [m, n] */
                     const int m,
                     const int n,
                     const int k) {
  __local DATA_TYPE ta[TILE_SIZE][TILE_SIZE];
  __local DATA_TYPE tb[TILE_SIZE][TILE_SIZE];
  const int row = get_global_id(1);
  const int col = get_global_id(0);
  const int lr = get_local_id(1);
  const int lc = get_local_id(0);
  DATA_TYPE acc = 0;
  for (int t = 0; t < k; t += TILE_SIZE) {
    ta[lr][lc] = (row < m && t + lc < k) ? a[row * k + t + lc] : 0;
    tb[lr][lc] = (col < n && t + lr < k) ? b[(t + lr) * n + col] : 0;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int i = 0; i < TILE_SIZE; ++i) acc = mad(ta[lr][i], tb[i][lc], acc);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (row < m && col < n) c[row * n + col] = acc;
}
