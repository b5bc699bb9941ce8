
__kernel void pooling(__global const DATA_TYPE *input,   /* [channels, height, width] */
                      __global DATA_TYPE *output,
                      const int in_height,
                      const int in_width,
                      const int out_height,
                      const int out_width,
                      const int pool_size,
                      const int stride,
                      const int padding) {
  const int ow = get_global_id(0);
  const int oh = get_global_id(1);
  const int c = get_global_id(2);
  if (ow >= out_width || oh >= out_height) return;
  __global const DATA_TYPE *in = input + c * in_height * in_width;
  const int h0 = max(oh * stride - padding, 0);
  const int w0 = max(ow * stride - padding, 0);
  const int h1 = min(oh * stride - padding + pool_size, in_height);
  const int w1 = min(ow * stride - padding + pool_size, in_width);
#ifdef POOL_AVG
  DATA_TYPE acc = 0;
  for (int h = h0; h < h1; ++h)
    for (int w = w0; w < w1; ++w) acc += in[h * in_width + w];
  const int count = max((h1 - h0) * (w1 - w0), 1);
  output[(c * out_height + oh) * out_width + ow] = acc / count;
#else
  DATA_TYPE acc = -MAXFLOAT;
  for (int h = h0; h < h1; ++h)
    for (int w = w0; w < w1; ++w) acc = fmax(acc, in[h * in_width + w]);
  output[(c * out_height + oh) * out_width + ow] = acc;
#endif
}
